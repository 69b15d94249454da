#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, lint and type-check, then run the whole suite
# (and its fast tier on Python 3.13 too, where the machine has it).
# --fast: the same but for the tests that need real Blender or a browser (markers `blender`, `browser`):
# the core, store, transports, apps and benchmarks, about a minute and a half on 2 cores.
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Python 3.11 runs the whole suite (its bpy 5.0.1 is what the Blender tests pin); a machine with 3.13 alone runs it there.
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.13 python3; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 13)))' 2>/dev/null; then PY=$candidate; break; fi
  done
fi

FAST=0
args=()
for arg in "$@"; do
  if [ "$arg" = --fast ]; then FAST=1; else args+=("$arg"); fi
done

# Debian packages: bubblewrap (the render sandbox), Blender 3.4 (the CLI
# backend and version-mismatch tests) and Chromium with its driver (the
# dashboard's browser test). Needs root; elsewhere those tests skip.
if [ "$FAST" = 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
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

# Python 3.13 beside 3.11, where the machine has it (on PATH or under pyenv): bpy 5.1 and later exist for it only.
PY313=""
for candidate in python3.13 "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
  if "$candidate" -c pass 2>/dev/null; then PY313=$candidate; break; fi
done

# Blenders beside the bpy above, for the tests of one farm holding several (about 375 MB each, kept between runs):
# 4.2 LTS, and 5.3 where Python 3.13 runs.
if [ "$FAST" = 0 ]; then
  blenders=${FRENDER_BLENDERS:-${XDG_DATA_HOME:-$HOME/.local/share}/frender/blender}
  ls -d "$blenders"/4.2.* >/dev/null 2>&1 || "$PY" -m frender blender add 4.2 >/dev/null
  if [ -n "$PY313" ]; then ls -d "$blenders"/5.3.* >/dev/null 2>&1 || "$PY" -m frender blender add 5.3 >/dev/null; fi
fi

# Lint and types first: any finding fails the run (pyproject.toml says what each checks).
"$PY" -m ruff check .
"$PY" -m mypy

# The transport tests run twice, with the TLS fast path and without it (tests/transports/conftest.py).
if [ "$FAST" = 1 ]; then
  exec "$PY" -m pytest -n 2 -m "not blender and not browser" ${args[@]+"${args[@]}"}
fi
"$PY" -m pytest -n 2 ${args[@]+"${args[@]}"}

# The fast tier again on Python 3.13, where it runs beside the Python above (no bpy needed for it).
if [ -n "$PY313" ] && [ "$("$PY313" -c 'import sys; print(sys.prefix)')" != "$("$PY" -c 'import sys; print(sys.prefix)')" ]; then
  "$PY313" -m pip install -q --disable-pip-version-check -e '.[test]'
  "$PY313" -m pytest -n 2 -m "not blender and not browser" -p no:cacheprovider ${args[@]+"${args[@]}"}
fi
