#!/usr/bin/env bash
# Install everything the tests need into .venv (from scratch on a fresh machine), then run
# the linters, the type checker and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[emulator,qt]" --group dev

# A real X server for the Tk kiosk tests (Debian's xvfb, xdotool, and imagemagick for its
# screenshot), when we may install it.
missing_x=0
for tool in Xvfb xdotool import; do command -v "$tool" >/dev/null 2>&1 || missing_x=1; done
if [ "$missing_x" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        xvfb xdotool imagemagick >/dev/null
fi

# The vendor's server SDK needs Python >= 3.12: the parity suite runs it in its own venv.
if [ -z "${TIMEBACK_PARITY_PYTHON:-}" ] && [ -f .ci/parity-venv.sh ]; then
    parity_venv="${XDG_CACHE_HOME:-$HOME/.cache}/timeback-client/parity-venv"
    if bash .ci/parity-venv.sh "$parity_venv"; then
        export TIMEBACK_PARITY_PYTHON="$parity_venv/bin/python"
    fi
fi

.venv/bin/ruff check src tests examples
.venv/bin/mypy --strict src tests/typing/check_public_types.py
.venv/bin/pytest "$@"
