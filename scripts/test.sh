#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, lint and type-check, then run the whole suite.
# --fast: the same but for the tests that need real Blender or a browser (markers `blender`, `browser`):
# the core, store, transports, apps and benchmarks, about a minute and a half on 2 cores.
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}

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

# Lint and types first: any finding fails the run (pyproject.toml says what each checks).
"$PY" -m ruff check .
"$PY" -m mypy

# The transport tests run twice, with the TLS fast path and without it (tests/transports/conftest.py).
if [ "$FAST" = 1 ]; then
  exec "$PY" -m pytest -n 2 -m "not blender and not browser" ${args[@]+"${args[@]}"}
fi
exec "$PY" -m pytest -n 2 ${args[@]+"${args[@]}"}
