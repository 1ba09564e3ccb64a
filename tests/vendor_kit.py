"""The vendor's own server SDK for tests: its virtualenv, the server, and what it sent.

``timeback-sdk`` 0.4.0 needs Python >= 3.12, so it runs in a virtualenv of its own
(``.ci/parity-venv.sh``; ``TIMEBACK_PARITY_PYTHON`` names its python) behind FastAPI
(``tests/emulator/parity/vendor_server.py``). The parity suite, the held-time story, the
simulate and the Locust tests all start it through `vendor_server`.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
VENDOR_SERVER = REPO / "tests" / "emulator" / "parity" / "vendor_server.py"
VENV_SCRIPT = REPO / ".ci" / "parity-venv.sh"
NO_PYTHON_312 = 3  # exit status of .ci/parity-venv.sh


def parity_python() -> str:
    """The python of the vendor's virtualenv, made (once, cached) if need be."""
    configured = os.environ.get("TIMEBACK_PARITY_PYTHON")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"TIMEBACK_PARITY_PYTHON={configured} does not exist")
        return configured
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "timeback-client" / "parity-venv"
    made = subprocess.run(
        ["bash", str(VENV_SCRIPT), str(venv)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if made.returncode == NO_PYTHON_312:
        pytest.skip(
            "no Python 3.12 interpreter on this machine, and timeback-sdk 0.4.0 needs"
            " Python >= 3.12 (set TIMEBACK_PARITY_PYTHON to a venv's python to run this)"
        )
    if made.returncode != 0:
        pytest.fail(f"{VENV_SCRIPT} {venv} failed:\n{made.stdout}\n{made.stderr}")
    return str(venv / "bin" / "python")


@contextmanager
def vendor_server(
    workdir: Path,
    config: Mapping[str, Any],
    students: Mapping[str, str],
    *,
    port: int = 0,
    name: str = "vendor",
    roster: list[str] | None = None,
) -> Iterator[str]:
    """The vendor's server with this ``timeback.config.json`` and roster; its origin.

    Args:
        workdir: where its config (``timeback.config.json``) and log (``NAME.log``) go.
        config: the backend's config, as its server SDK reads it.
        students: bearer token -> email, the identities it resolves.
        port: 0 for a free one; a port again restarts a server where it was.
        name: the log's name, for a test that starts it more than once.
        roster: the only emails its OneRoster knows; None: every email.
    """
    path = workdir / "timeback.config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    log_path = workdir / f"{name}.log"
    command = [parity_python(), str(VENDOR_SERVER), "--config", str(path)]
    command += ["--students", json.dumps(dict(students)), "--port", str(port)]
    if roster is not None:
        command += ["--roster", json.dumps(roster)]
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=workdir
        )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 60)
        line = server.stdout.readline().strip() if ready else ""
        if not line.isdigit():
            pytest.fail(f"the vendor server did not start:\n{log_path.read_text()}")
        yield f"http://127.0.0.1:{line}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def sent_events(origin: str) -> list[dict[str, Any]]:
    """Every Caliper event the vendor's server sent, as serialized for Caliper."""
    events: list[dict[str, Any]] = httpx.get(f"{origin}/_parity/events", timeout=30).json()[
        "events"
    ]
    return events


def active_ms_by_run(events: list[dict[str, Any]]) -> dict[str, int]:
    """The TimeSpentEvents' active time, summed per run (``session`` is ``urn:uuid:<runId>``).

    Each window's seconds are its milliseconds / 1000, so each is rounded back on its own.
    """
    per_run: Counter[str] = Counter()
    for event in events:
        if event.get("type") != "TimeSpentEvent":
            continue
        run_id = str(event["session"]).removeprefix("urn:uuid:")
        for item in event["generated"]["items"]:
            if item["type"] == "active":
                per_run[run_id] += round(float(item["value"]) * 1000)
    return dict(per_run)
