#!/usr/bin/env bash
# Build the documentation site (mkdocs-material + mkdocstrings) in strict mode: a broken
# link or reference, or a docstring mkdocstrings cannot read, fails the build.
#
#   bash scripts/docs.sh [VENV]      # default VENV: .venv (made if missing)
#
# Installs the `docs` dependency group of pyproject.toml into VENV, then builds into
# $SITE_DIR (default: site/). The API reference is read from src/ without importing it.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${1:-.venv}
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# Dependency groups need pip 25.1 or later.
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q --group docs

NO_MKDOCS_2_WARNING=1 "$venv/bin/python" -m mkdocs build --strict --site-dir "${SITE_DIR:-site}"
