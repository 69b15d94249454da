"""`python -m frender` is the `frender` command."""

from frender.apps.cli import main

main()
