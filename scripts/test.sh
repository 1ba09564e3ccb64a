#!/usr/bin/env bash
# Install everything the tests need (from scratch on a fresh machine), then run every nox
# session of noxfile.py, several at once: the test suite on Python 3.11, 3.12 and 3.13,
# again on the oldest versions pyproject.toml allows (lowest), the linters (lint) and the
# package (build). Arguments go to pytest: `bash scripts/test.sh -k ledger`.
set -euo pipefail
cd "$(dirname "$0")/.."

# .venv: nox and uv, which run the sessions, and the whole dev environment beside them
# (`.venv/bin/pytest tests/test_ledger.py` for a quick loop on one Python).
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q --group nox
.venv/bin/uv pip install -q --python .venv/bin/python \
    -e ".[emulator,qt]" --group dev --group nox --group check

# A real X server for the Tk kiosk tests (Debian's xvfb, xdotool, and imagemagick for its
# screenshot), and shellcheck for the workflow's scripts, when we may install them.
missing=()
for tool in Xvfb:xvfb xdotool:xdotool import:imagemagick shellcheck:shellcheck; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${missing[@]}" >/dev/null
fi

# The vendor's server SDK needs Python >= 3.12: the parity suite runs it in its own venv,
# made here once for every session.
if [ -z "${TIMEBACK_PARITY_PYTHON:-}" ] && [ -f .ci/parity-venv.sh ]; then
    parity_venv="${XDG_CACHE_HOME:-$HOME/.cache}/timeback-client/parity-venv"
    if bash .ci/parity-venv.sh "$parity_venv"; then
        export TIMEBACK_PARITY_PYTHON="$parity_venv/bin/python"
    fi
fi

# The sessions mostly wait (servers, subprocesses, real-time sleeps, an X server), so they
# run at once, each into its log; each log is shown whole once its session ends.
mapfile -t sessions < <(.venv/bin/nox --list --json | .venv/bin/python -c \
    'import json, sys; print("\n".join(s["session"] for s in json.load(sys.stdin)))')
logs=.nox/logs
mkdir -p "$logs"
pids=()
stop_sessions() {
    local pid
    for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
    exit 130
}
trap stop_sessions INT TERM
set -m  # each session in a process group of its own, so that an interrupt stops it whole
for session in "${sessions[@]}"; do
    .venv/bin/nox --session "$session" -- "$@" >"$logs/$session.log" 2>&1 &
    pids+=($!)
done
set +m

summary=()
failed=0
for i in "${!sessions[@]}"; do
    session=${sessions[$i]}
    status=0
    wait "${pids[$i]}" || status=$?
    echo "::::::::::::::::::::::::::::::: nox -s $session :::::::::::::::::::::::::::::::"
    cat "$logs/$session.log"
    if [ "$status" != 0 ]; then
        summary+=("$session: FAILED (exit $status; log in $logs/$session.log)")
        failed=1
    elif skipped=$(grep -m1 "Session $session skipped: " "$logs/$session.log"); then
        summary+=("$session: SKIPPED (${skipped#*skipped: })")
    else
        summary+=("$session: passed")
    fi
done
echo ":::::::::::::::::::::::::::::::::: sessions ::::::::::::::::::::::::::::::::::"
printf '%s\n' "${summary[@]}"
exit "$failed"
