"""The ``timeback-client`` command: bad arguments get one line naming them and exit 2,
never a traceback; and what it reports is true."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from timeback_client.tools._cli import main
from timeback_client.tools._report import ProgressLine

COMMAND = [sys.executable, "-m", "timeback_client"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["emulator", "--port", "-1"], "--port"),
        (["emulator", "--port", "70000"], "--port"),
        (["emulator", "--port", "http"], "--port"),
        (["emulator", "--mount", "noslash"], "--mount"),
        (["emulator", "--student", "a=x@example.edu", "--student", "a=y@example.edu"], "--student"),
        (["demo", "--speed", "inf"], "--speed"),
        (["demo", "--speed", "0"], "--speed"),
        (["simulate", "--students", "3", "--minutes", "1", "--speed", "inf"], "--speed"),
        (["simulate", "--students", "0", "--minutes", "1"], "--students"),
        (["simulate", "--students", "3", "--minutes", "nan"], "--minutes"),
        (["simulate", "--students", "3", "--minutes", "1", "--course", "Math:13"], "--course"),
        (["simulate", "--students", "3", "--minutes", "1", "--course", "Maths:3"], "--course"),
        (["simulate", "--students", "3", "--minutes", "1", "--tokens", "/nonexistent"], "--tokens"),
        (["simulate", "--students", "3", "--minutes", "1", "--token", "a"], "--token"),
    ],
)
def test_a_bad_argument_is_one_line_naming_it_and_exit_status_2(
    args: list[str], named: str
) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert named in last
    assert last.startswith("timeback-client")


@pytest.mark.parametrize(
    ("option", "content", "named"),
    [
        ("--courses", '{"courses": [', "line 1"),
        ("--courses", '{"courses": [{"subject": "Math", "grade": 13}]}', "courses[0].grade"),
        ("--courses", '{"courses": [{"subject": "Math", "grade": 3}]}', "no course"),
        ("--tokens", "# nobody yet\n", "holds no credential"),
        ("--tokens", "tok-a\nhas a space\n", "line 2"),
    ],
)
def test_a_bad_courses_or_tokens_file_is_refused_at_the_door_naming_line_or_field(
    tmp_path: Path, option: str, content: str, named: str
) -> None:
    path = tmp_path / "input"
    path.write_text(content, encoding="utf-8")
    done = run("simulate", "--students", "3", "--minutes", "1", option, str(path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("timeback-client simulate: error: argument " + option)
    assert named in last
    assert "has a space" not in last  # a credential is never echoed


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert re.fullmatch(r"timeback-client \d+\.\d+\.\d+\S*\n", done.stdout)


def test_simulate_against_an_unreachable_server_says_so_within_seconds() -> None:
    started = time.monotonic()
    done = run(
        "simulate",
        "--students",
        "5",
        "--minutes",
        "1",
        "--server",
        "http://127.0.0.1:9/api/timeback",
        "--token",
        "t",
    )
    assert time.monotonic() - started < 20
    assert done.returncode == 2
    assert "cannot reach --server" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_simulation_of_nothing_is_never_ok(capsys: pytest.CaptureFixture[str]) -> None:
    """A hundredth of a lesson minute: no student even arrives. That is no success."""
    # Seed 78: both students arrive after 59 s of lesson time, far past the run's end,
    # even on a machine slow enough to stretch it (an unseeded student arrives within the
    # 0.6 s about once in fifty runs).
    status = main(
        ["simulate", "--students", "2", "--minutes", "0.01", "--speed", "50", "--seed", "78"]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "NOT OK: nothing was simulated" in out


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal (pty, termios): POSIX only")
def test_the_progress_line_fits_an_80_column_terminal_and_redraws_in_place() -> None:
    """In a real pseudo-terminal of 80 columns, a long status never wraps: every redraw
    is one line of at most 79 characters, cleared to its end."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with os.fdopen(slave, "w", buffering=1, closefd=True) as tty:
        assert tty.isatty()
        line = ProgressLine(tty, interval=0)
        for step in range(5):
            line.update(step / 4, "students active 123, paused 45, idle 6; " * 4)
        line.note("fetching the emulator's totals and problems")
        line.done("all done")
        tty.flush()
        written = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            written += chunk
            if b"all done" in written:
                break
    os.close(master)
    text = written.decode()
    for segment in re.split(r"[\r\n]", text):
        visible = segment.replace("\x1b[K", "")
        assert len(visible) <= 79, visible
    assert text.count("\x1b[K") >= 5


def test_the_emulator_process_startup_wait_ends_even_when_the_child_is_silent(
    tmp_path: Path,
) -> None:
    """Reading the child's first line has a deadline on every OS (a reader thread, not
    ``select``, which Windows pipes do not support)."""
    from timeback_client.tools._emulator_process import _readline_within

    with subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            started = time.monotonic()
            with pytest.raises(RuntimeError, match=r"said nothing within 0\.5 s"):
                _readline_within(child, 0.5)
            assert time.monotonic() - started < 3
        finally:
            child.kill()


def test_simulate_against_a_url_that_is_not_the_mount_says_so_before_any_student() -> None:
    from timeback_client.tools._emulator_process import EmulatorProcess

    with EmulatorProcess({"t": "ada@example.edu"}) as emulator:
        done = run(
            "simulate",
            "--students",
            "2",
            "--minutes",
            "1",
            "--server",
            emulator.origin + "/api",  # the mount is /api/timeback
            "--token",
            "t",
        )
    assert done.returncode == 2
    assert "answers 404" in done.stderr
    assert "is it the mount of the Timeback server SDK" in done.stderr
    assert "Traceback" not in done.stderr


def test_simulate_against_a_url_without_a_scheme_says_what_to_give() -> None:
    done = run(
        "simulate",
        "--students",
        "2",
        "--minutes",
        "1",
        "--server",
        "127.0.0.1:9/api/timeback",
        "--token",
        "t",
    )
    assert done.returncode == 2
    assert "give a URL with http:// or https://" in done.stderr
