"""Fixtures for the frontend tests: a private X server for Tk, offscreen Qt, a recorder.

Tk needs a real X display. The tests start their own Xvfb (Debian package ``xvfb``) on a
free display number, so they neither need nor disturb a desktop session; without Xvfb
they fall back to ``$DISPLAY``, and skip, saying why, only when neither exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import tkinter
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"

# The examples are run as `python -m examples.kiosk_app` from the repository root; the
# tests import them the same way.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def x_display() -> Iterator[str]:
    """An X display for Tk: a private Xvfb when installed, else ``$DISPLAY``."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        display = os.environ.get("DISPLAY")
        if not display:
            pytest.skip("no X display: install Xvfb (apt-get install xvfb) or set DISPLAY")
        yield display
        return
    read_fd, write_fd = os.pipe()
    # -terminate: the server also goes when its last client does, so that a test run
    # killed before its teardown (say, by a timeout) leaves no Xvfb behind.
    arguments = ["-screen", "0", "1024x768x24", "-nolisten", "tcp", "-terminate"]
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), *arguments],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        # Xvfb picks a free display number itself and writes it once it accepts clients.
        ready, _, _ = select.select([read_fd], [], [], 15)
        number = os.read(read_fd, 64).decode().strip() if ready else ""
        if not number:
            raise RuntimeError("Xvfb did not start (no display number within 15 s)")
        display = f":{number}"
        previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display
        try:
            yield display
        finally:
            if previous is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = previous
    finally:
        os.close(read_fd)
        server.terminate()
        server.wait(10)


# Tk roots made here live until the process ends. A Tk interpreter must be deleted on
# the thread that made it, but a widget tree is a reference cycle, and cyclic garbage is
# collected by whichever thread happens to allocate: the SDK's own, say, which aborts
# the process ("Tcl_AsyncDelete: async handler deleted by the wrong thread").
_KEEP_ALIVE: list[object] = []


@pytest.fixture(scope="session")
def tk_root(x_display: str) -> Iterator[tkinter.Tk]:
    """One Tk interpreter for the session (withdrawn); tests open Toplevels on it."""
    root = tkinter.Tk()
    _KEEP_ALIVE.append(root)
    root.withdraw()
    yield root
    root.destroy()


@pytest.fixture
def tk_errors(tk_root: tkinter.Tk) -> Iterator[list[BaseException]]:
    """Exceptions raised in Tk callbacks during the test (Tk would only print them)."""
    errors: list[BaseException] = []

    def report(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        errors.append(error)

    tk_root.report_callback_exception = report
    yield errors
    del tk_root.report_callback_exception


@pytest.fixture
def window(tk_root: tkinter.Tk, tk_errors: list[BaseException]) -> Iterator[tkinter.Toplevel]:
    """A fresh window (Toplevel) at the screen's top left, shown; fails on Tk errors."""
    top = tkinter.Toplevel(tk_root)
    top.geometry("300x200+0+0")
    top.update()
    yield top
    with contextlib.suppress(tkinter.TclError):  # the test destroyed it already
        top.destroy()
    tk_root.update()
    assert tk_errors == []


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``artifacts/`` at the repository root (gitignored): screenshots and the like."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


class Recorder:
    """An ``httpx.MockTransport`` backend that accepts every heartbeat and keeps its body."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: list[dict[str, Any]] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self._windows.append(json.loads(request.content))
        return httpx.Response(204)

    @property
    def windows(self) -> list[dict[str, Any]]:
        """The heartbeat bodies received so far, in order."""
        with self._lock:
            return list(self._windows)


@pytest.fixture
def recorder() -> Recorder:
    """A backend that records heartbeats (see `Recorder`)."""
    return Recorder()
