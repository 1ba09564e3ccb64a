"""A real JupyterLab server on loopback, and Debian's Chromium driven over the DevTools protocol.

Chromium is driven over its DevTools protocol (CDP) directly, with a websocket: typing
and clicking as input events, and hiding the page by bringing another tab to the front.
Playwright drives Chromium over the same protocol, but it turns on focus emulation for
every page it attaches to, which holds the page visible (Chromium counts it as being
captured): under Playwright, ``document.visibilityState`` never leaves "visible".
Nothing here downloads a browser: the test uses the ``chromium`` the machine has.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# The flags of a headless Chromium that runs as root in a container, touches no network
# but the test's loopback server, and leaves nothing behind (a fresh profile each time).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,900",
)


def chromium_path() -> str:
    """Debian's Chromium (package ``chromium``); on Linux its absence is a failure."""
    names = ("chromium", "chromium-browser", "google-chrome")  # Debian, Ubuntu, CI runners
    found = os.environ.get("TIMEBACK_CHROMIUM") or next(
        filter(None, map(shutil.which, names)), None
    )
    if found:
        return found
    message = (
        "no chromium on PATH: the Jupyter browser test needs Debian's chromium "
        "(apt-get install chromium; scripts/test.sh installs it)"
    )
    if sys.platform.startswith("linux"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(
    url: str, deadline: float, what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None:
                log_text = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"{what} exited with {process.returncode}; its log ends:\n{log_text}"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer at {url}") from None
            time.sleep(0.2)


@contextmanager
def jupyter_lab(root: Path, scratch: Path) -> Iterator[str]:
    """``jupyter lab`` serving ``root`` on loopback; yields its base URL with the token.

    Its settings, workspaces and runtime files go to ``scratch``, so that the user's own
    never matter. The kernel inherits this process's environment (and so ``PYTHONPATH``).
    """
    port, token = _free_port(), base64.urlsafe_b64encode(os.urandom(18)).decode()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(scratch / "config"),
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(scratch / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "workspaces"),
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # never asks PyPI about extensions
    ]
    if hasattr(os, "getuid") and os.getuid() == 0:  # a CI container
        command.append("--allow-root")
    log_path = scratch / "jupyter.log"
    log = log_path.open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(
            f"{base}/api/status?token={token}",
            time.monotonic() + 60,
            "jupyter lab",
            server,
            log_path,
        )
        yield f"{base}/lab/tree/{{path}}?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


class Page:
    """One tab of Chromium, driven over CDP (the ``websocket-client`` package)."""

    def __init__(self, websocket_url: str) -> None:
        import websocket  # websocket-client (dev group)

        self._ws = websocket.create_connection(websocket_url, timeout=30, suppress_origin=True)
        self._next_id = 0
        self.on_failure_screenshot: Path | None = None  # where wait_for leaves the page

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a CDP method and return its result (events in between are dropped)."""
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})  # type: ignore[no-any-return]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                if self.on_failure_screenshot is not None:
                    shot = self.send("Page.captureScreenshot", format="png")
                    self.on_failure_screenshot.write_bytes(base64.b64decode(shot["data"]))
                raise TimeoutError(f"still falsy after {timeout} s: {expression}")
            time.sleep(0.05)

    def key(
        self, key: str, *, code: str | None = None, keycode: int = 0, shift: bool = False
    ) -> None:
        """Press and release one key (``text`` for printable keys, as a keyboard does)."""
        text = key if len(key) == 1 else ("\r" if key == "Enter" else "")
        common = {
            "key": key,
            "code": code or (f"Key{key.upper()}" if len(key) == 1 and key.isalpha() else key),
            "windowsVirtualKeyCode": keycode or (ord(key.upper()) if len(key) == 1 else 0),
            "modifiers": 8 if shift else 0,
        }
        self.send("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        self.send("Input.dispatchKeyEvent", type="keyUp", **common)

    def click(self, selector: str) -> None:
        """A left click in the middle of the first element matching ``selector``."""
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, selector: str, path: Path, margin: int = 8) -> None:
        """A PNG of the element matching ``selector``, with a margin around it."""
        self.evaluate(
            f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})"
        )
        time.sleep(0.3)  # the notebook lays out what scrolled in
        x, y, width, height = self.wait_for(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()"
        )
        clip = {
            "x": max(0, x - margin),
            "y": max(0, y - margin),
            "width": width + 2 * margin,
            "height": height + 2 * margin,
            "scale": 1,
        }
        shot = self.send("Page.captureScreenshot", format="png", clip=clip)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self._ws.close()


@contextmanager
def chromium(scratch: Path) -> Iterator[tuple[Page, str, str]]:
    """Headless Chromium with a fresh profile; yields its first tab, the tab's target id,
    and the target id of a second, background tab (bring it to the front to hide the first)."""
    profile = scratch / "chromium-profile"
    command = [
        chromium_path(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    browser = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    page: Page | None = None
    try:
        # Chromium writes the port it chose into the profile.
        deadline = time.monotonic() + 30
        port_file = profile / "DevToolsActivePort"
        while not port_file.exists() or not port_file.read_text().strip():
            if browser.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = json.load(answer)
        tab = next(t for t in targets if t["type"] == "page")
        page = Page(tab["webSocketDebuggerUrl"])
        other = page.send("Target.createTarget", url="about:blank", background=True)["targetId"]
        yield page, tab["id"], other
    finally:
        if page is not None:
            page.close()
        browser.terminate()
        try:
            browser.wait(15)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
