"""The README's first command: `timeback-client demo` tells the whole story and adds up."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from timeback_client.tools._cli import main


def test_the_demo_story_adds_up_and_finds_no_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--speed", "2000"]) == 0
    out = capsys.readouterr().out
    assert "resumes run" in out
    assert "server: record() completion" in out
    rows = re.findall(r"^([0-9a-f-]{36})\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)", out, re.M)
    assert len(rows) == 2  # the completed run over two sessions, and the new attempt
    (first, sessions, _, active, measured), (second, *_rest) = rows
    assert sessions == "2"
    assert active == measured
    assert first != second
    assert "Problems the emulator found\nnone" in out
    assert "reached the backend exactly once" in out


def test_the_mistakes_are_caught(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--speed", "2000", "--mistakes"]) == 0
    out = capsys.readouterr().out
    assert "- double-counting on run" in out
    assert "- heartbeat-after-completion on run" in out
    assert "Both mistakes were caught." in out


def test_the_command_is_installed_and_rejects_a_bad_speed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "timeback_client", "demo", "--speed", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "argument --speed: 0 is not a positive, finite number" in done.stderr
    assert "Traceback" not in done.stderr
