"""The inspector page's routes: its own files only, and the overview it polls.

The page itself runs in Chromium in ``tests/frontends/test_inspector_browser.py``.
"""

from __future__ import annotations

import re

import httpx
import pytest
from emulator_bodies import completion, new_run, window

from timeback_client.emulator import Emulator

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http(emulator: Emulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=emulator.transport(),
        base_url="http://emulator",
        headers={"Authorization": "Bearer tok-ada"},
    )


async def test_the_page_and_its_files_are_served_with_no_outside_source(
    http: httpx.AsyncClient,
) -> None:
    async with http:
        page = await http.get("/_emulator/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        # Everything the page loads is its own: relative references, no CDN.
        assert set(re.findall(r'(?:src|href)="([^"]+)"', page.text)) == {
            "inspector.css",
            "inspector.js",
        }
        for name, media in (("inspector.js", "text/javascript"), ("inspector.css", "text/css")):
            served = await http.get(f"/_emulator/{name}")
            assert served.status_code == 200
            assert served.headers["content-type"].startswith(media)
            outside = re.findall(r"https?://[^\s\"'`]+", served.text)
            assert set(outside) <= {"http://www.w3.org/2000/svg"}  # a namespace, not a fetch
        # A person who leaves off the slash gets the page too.
        assert (await http.get("/_emulator", follow_redirects=True)).url.path == "/_emulator/"


async def test_the_overview_lists_runs_newest_first_and_answers_unchanged_cheaply(
    http: httpx.AsyncClient, emulator: Emulator
) -> None:
    async with http:
        empty = (await http.get("/_emulator/overview")).json()
        assert (empty["changed"], empty["runs"], empty["problems"]) == (True, [], [])
        unchanged = (await http.get(f"/_emulator/overview?since={empty['version']}")).json()
        assert unchanged == {"version": empty["version"], "changed": False}

        first, second = new_run(), new_run()
        heartbeat = "/api/timeback/activity/heartbeat"
        assert (await http.post(heartbeat, json=window(first))).status_code == 204
        one = (await http.get("/_emulator/overview")).json()["version"]
        emulator.record(completion(first))  # at 12:30, the fixture's clock
        late = window(first, "13:00:00.000", "13:00:15.000")
        assert (await http.post(heartbeat, json=late)).status_code == 204
        assert (await http.post(heartbeat, json=window(second, elapsed_ms=1))).status_code == 204

        found = (await http.get(f"/_emulator/overview?since={empty['version']}")).json()
        assert found["changed"] is True
        assert [run["runId"] for run in found["runs"]] == [second, first]
        newest, oldest = found["runs"]
        assert oldest["course"] == "Math G3"
        assert (oldest["windows"], oldest["completed"], oldest["activeMs"]) == (2, True, 30000)
        assert oldest["completedAt"] == "2026-11-25T12:30:00.000Z"
        assert oldest["problems"] == ["heartbeat-after-completion"]
        assert newest["problems"] == ["window-arithmetic"]
        assert {p["rule"] for p in found["problems"]} == set(
            oldest["problems"] + newest["problems"]
        )

        # A reset moves the version even when the counts come back to the same.
        emulator.reset()
        assert (await http.post(heartbeat, json=window(first))).status_code == 204
        again = (await http.get(f"/_emulator/overview?since={one}")).json()
        assert again["changed"] is True
        assert [run["runId"] for run in again["runs"]] == [first]
