#!/usr/bin/env bash
# Install everything the tests need (from scratch on a fresh machine), then run every nox
# session of noxfile.py, several at once: the test suite on Python 3.11 to 3.14 (one the
# machine lacks is reported skipped), again on the oldest versions pyproject.toml allows
# (lowest), the linters (lint), the package (build) and the docs site (docs). Arguments go
# to pytest: `bash scripts/test.sh -k ledger`.
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
    -e ".[emulator,qt,jupyter,locust,pygame,textual,kivy,marimo]" --group dev --group nox --group check

# A real X server for the Tk kiosk and Kivy tests (Debian's xvfb, xdotool, and imagemagick
# for a screenshot), Debian's chromium and its chromedriver for the browser tests (the
# notebook badge, marimo, the emulator's page), and shellcheck for the workflow's scripts, when we may install them.
missing=()
for tool in Xvfb:xvfb xdotool:xdotool import:imagemagick chromium:chromium \
    chromedriver:chromium-driver shellcheck:shellcheck; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
# Kivy draws with OpenGL: on Xvfb, Mesa's software renderer.
compgen -G "/usr/lib/*/dri/swrast_dri.so" >/dev/null || missing+=(libgl1-mesa-dri)
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

# The sessions mostly wait (servers, subprocesses, real-time sleeps, an X server: a
# suite's pytest process uses about a tenth of a core), so they run at once, each into its
# log: lint, build and docs from the start, and the test suites (nox tag "suite") all
# together, or TEST_SUITES_AT_ONCE at a time in the order noxfile.py defines them (the
# longest first). No test may depend on timing that a loaded machine breaks: how many run
# at once is a matter of speed, never of correctness.
suites_at_once=${TEST_SUITES_AT_ONCE:-8}
logs=.nox/logs
mkdir -p "$logs"
rm -f "$logs"/*.status
sessions=()
suites=" "
while read -r session tags; do
    sessions+=("$session")
    case " $tags " in *" suite "*) suites="$suites$session " ;; esac
done < <(.venv/bin/nox --list --json | .venv/bin/python -c \
    'import json, sys; [print(s["session"], *s["tags"]) for s in json.load(sys.stdin)]')

run_session() {  # the session's exit status goes beside its log
    local status=0
    .venv/bin/nox --session "$1" -- "${@:2}" >"$logs/$1.log" 2>&1 || status=$?
    echo "$status" >"$logs/$1.status"
}
pids=()
stop_sessions() {
    local pid
    for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
    exit 130
}
trap stop_sessions INT TERM
launch() {
    set -m  # each session in a process group of its own, so that an interrupt stops it whole
    run_session "$@" &
    pids+=($!)
    set +m
}
running_suites() {
    local session count=0
    for session in $launched_suites; do
        [ -f "$logs/$session.status" ] || count=$((count + 1))
    done
    echo "$count"
}

launched_suites=""
for session in "${sessions[@]}"; do
    case "$suites" in *" $session "*) continue ;; esac
    launch "$session" "$@"
done
for session in "${sessions[@]}"; do
    case "$suites" in *" $session "*) ;; *) continue ;; esac
    while [ "$(running_suites)" -ge "$suites_at_once" ]; do sleep 1; done
    launch "$session" "$@"
    launched_suites="$launched_suites $session"
done

# Each log whole, in the list's order, then one line per session.
summary=()
failed=0
for session in "${sessions[@]}"; do
    while [ ! -f "$logs/$session.status" ]; do sleep 1; done
    status=$(cat "$logs/$session.status")
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
wait
echo ":::::::::::::::::::::::::::::::::: sessions ::::::::::::::::::::::::::::::::::"
printf '%s\n' "${summary[@]}"
exit "$failed"
