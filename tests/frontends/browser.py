"""A real Jupyter server on loopback, and Debian's Chromium driven by Selenium.

Selenium drives Chromium through ``chromedriver`` (Debian's ``chromium-driver``, built
with the ``chromium`` beside it), both given by path: Selenium Manager, which would
download a driver or a browser, never runs. Input goes through WebDriver actions (real
key and pointer events in the page). The page is hidden by bringing another tab to the
front with the DevTools protocol's ``Target.activateTarget`` (``execute_cdp_cmd``), which
leaves the driver on the lesson's tab, so that the test can watch it while it is hidden.

Playwright, driving the same Chromium, cannot hide a page: it turns on focus emulation
for every page it attaches to, which holds the page visible (Chromium counts it as being
captured). Under Playwright ``document.visibilityState`` stayed "visible" with another
page in front (``bring_to_front``), with ``Emulation.setFocusEmulationEnabled`` turned
off on both pages and ``Target.activateTarget`` sent from a browser session, and with
Playwright's ``--disable-backgrounding-occluded-windows``,
``--disable-renderer-backgrounding`` and ``--disable-background-timer-throttling`` left
out. chromedriver turns no such emulation on: with another tab in front the page's
``visibilityState`` is "hidden", and "visible" again once it is back in front.
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
from selenium import webdriver
from selenium.webdriver import ActionChains, ChromeOptions, Keys
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

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


def chromedriver_path() -> str:
    """Debian's chromedriver (package ``chromium-driver``), the one for its Chromium."""
    found = os.environ.get("TIMEBACK_CHROMEDRIVER") or shutil.which("chromedriver")
    if found:
        return found
    message = (
        "no chromedriver on PATH: the Jupyter browser test needs Debian's chromium-driver "
        "(apt-get install chromium-driver; scripts/test.sh installs it)"
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


# The two front ends the lesson must work in: the module that serves each, the address
# of a notebook in it, and the name its pages give (their page config's ``appName``).
FRONT_ENDS = {
    "jupyterlab": ("jupyterlab", "/lab/tree/{path}", "JupyterLab"),
    "notebook7": ("notebook", "/notebooks/{path}", "Jupyter Notebook"),
}
APP_NAME = "JSON.parse(document.getElementById('jupyter-config-data').textContent).appName"


@contextmanager
def jupyter_server(front_end: str, root: Path, scratch: Path) -> Iterator[str]:
    """``jupyter lab`` or ``jupyter notebook`` (7) serving ``root`` on loopback.

    Yields the address of a notebook in that front end, ``{path}`` to fill in, with the
    token. Settings, workspaces and runtime files go to ``scratch``, so that the user's
    own never matter. The kernel inherits this process's environment (and so
    ``PYTHONPATH``).
    """
    module, notebook_path, _ = FRONT_ENDS[front_end]
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
        module,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        # JupyterLab's server extension runs under both: it never asks the internet for
        # news, updates or extensions.
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
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
            f"jupyter ({module})",
            server,
            log_path,
        )
        yield f"{base}{notebook_path}?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@contextmanager
def marimo_server(notebook: Path, scratch: Path) -> Iterator[str]:
    """``marimo run`` serving one notebook as an app on loopback; yields its address.

    Each page that opens it gets a kernel of its own that runs the notebook. marimo's
    settings go to ``scratch``, and it never looks for updates. The kernel inherits this
    process's environment (and so ``PYTHONPATH``).
    """
    port = _free_port()
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(scratch / "config"),
        "XDG_STATE_HOME": str(scratch / "state"),
        "XDG_CACHE_HOME": str(scratch / "cache"),
        "MARIMO_SKIP_UPDATE_CHECK": "1",
    }
    command = [
        sys.executable,
        "-m",
        "marimo",
        "-y",
        "run",
        str(notebook),
        "--headless",
        "--host=127.0.0.1",
        f"--port={port}",
        "--no-token",
        "--no-sandbox",
    ]
    log_path = scratch / "marimo.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        command, env=env, cwd=notebook.parent, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        _wait_for(base, time.monotonic() + 60, "marimo", server, log_path)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


class Page:
    """The lesson's tab of Chromium, driven by Selenium, and a second tab behind it."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver
        self.tab = driver.current_window_handle  # a tab's handle is its DevTools target id
        driver.switch_to.new_window("tab")
        self.other_tab = driver.current_window_handle
        driver.switch_to.window(self.tab)  # the lesson's tab in front again
        self.on_failure_screenshot: Path | None = None  # where wait_for leaves the page

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        return self.driver.execute_script(f"return {expression};")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                if self.on_failure_screenshot is not None:
                    self.driver.save_screenshot(str(self.on_failure_screenshot))
                raise TimeoutError(f"still falsy after {timeout} s: {expression}")
            time.sleep(0.05)

    def keys(self, *keys: str, shift: bool = False) -> None:
        """Press and release keys, one after the other, as a keyboard does."""
        actions = ActionChains(self.driver)
        if shift:
            actions.key_down(Keys.SHIFT)
        actions.send_keys(*keys)
        if shift:
            actions.key_up(Keys.SHIFT)
        actions.perform()

    def click(self, selector: str) -> None:
        """A left click in the middle of the first element matching ``selector``."""
        self.wait_for(f"document.querySelector({json.dumps(selector)})")
        element = self.driver.find_element(By.CSS_SELECTOR, selector)
        ActionChains(self.driver).move_to_element(element).click().perform()

    def to_front(self, tab: str) -> None:
        """Bring a tab to the front (the driver stays on the lesson's tab)."""
        self.driver.execute_cdp_cmd("Target.activateTarget", {"targetId": tab})

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
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def chromium(scratch: Path) -> Iterator[Page]:
    """Headless Chromium with a fresh profile, through chromedriver; yields its lesson tab."""
    options = ChromeOptions()
    options.binary_location = chromium_path()
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={scratch / 'chromium-profile'}"):
        options.add_argument(flag)
    # chromedriver's log, in a file opened and closed here: Selenium 4.11 never closes one
    # it opens itself.
    with (scratch / "chromedriver.log").open("wb") as log:
        service = Service(chromedriver_path(), log_output=log)
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield Page(driver)
        finally:
            driver.quit()
