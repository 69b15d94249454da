#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, lint and type-check, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}

# Debian packages: bubblewrap (the render sandbox), Blender 3.4 (the CLI
# backend and version-mismatch tests) and Chromium with its driver (the
# dashboard's browser test). Needs root; elsewhere those tests skip.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v bwrap >/dev/null || missing+=(bubblewrap)
  command -v blender >/dev/null || missing+=(blender)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

"$PY" -m pip install -q --disable-pip-version-check -e '.[bpy,test]'

# Lint and types first: any finding fails the run (pyproject.toml says what each checks).
"$PY" -m ruff check .
"$PY" -m mypy

# The transport tests run twice, with the TLS fast path and without it (tests/transports/conftest.py).
exec "$PY" -m pytest -n 2 "$@"
