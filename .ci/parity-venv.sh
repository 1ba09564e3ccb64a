#!/usr/bin/env bash
# Create (or reuse) the Python 3.12 virtualenv in which the parity suite runs the vendor's
# server SDK (timeback-sdk needs Python >= 3.12; the project itself supports 3.11).
#
#   .ci/parity-venv.sh DIR    then   TIMEBACK_PARITY_PYTHON=DIR/bin/python pytest tests/emulator/parity
#
# Exit status: 0 ready, 3 no Python 3.12 on this machine, anything else a failed install.
set -euo pipefail

venv=${1:?usage: $0 VENV_DIR}
# The versions the emulator was checked against. The vendor pins nothing of FastAPI, whose
# 404/405 bodies the parity suite also compares.
requirements=("timeback-sdk==0.4.0" "fastapi==0.165.0" "uvicorn==0.54.0")

find_python312() {
    local candidate
    for candidate in "${PYTHON312:-}" "$(command -v python3.12 || true)" \
        "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12*/bin/python3.12 \
        /usr/local/bin/python3.12 /usr/bin/python3.12; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] \
            && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

ready() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" - "${requirements[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version

import fastapi, timeback, uvicorn  # noqa: F401

for requirement in sys.argv[1:]:
    name, wanted = requirement.split("==")
    assert version(name) == wanted, (name, version(name), wanted)
PY
}

if ready; then
    exit 0
fi
if ! python312=$(find_python312); then
    echo "parity-venv: no Python 3.12 interpreter found" >&2
    exit 3
fi
rm -rf "$venv"
"$python312" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${requirements[@]}"
ready
