"""What the SDK tells the app about itself: its version, its User-Agent, its logs, its
warnings. Nothing printed unasked; everything there for whoever configures logging."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

import timeback_client
from fake_backend import FakeBackend
from timeback_client import (
    AsyncActivity,
    AsyncTimeback,
    CourseFields,
    ErrorContext,
    Timeback,
    TimebackError,
    TimebackWarning,
    TimeOptions,
    VirtualClock,
)
from timeback_client._version import UNKNOWN_VERSION, installed_version
from timeback_client.tools._cli import main

BASE = "http://127.0.0.1:9/api/timeback"
COURSE: CourseFields = {"subject": "Math", "grade": 3}
TOKEN = "s3cr3t-t0ken-value"
COOKIE = "c00kie-session-value"


def _start(timeback: AsyncTimeback, **options: Any) -> AsyncActivity:
    return timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE, **options)


def _rejection() -> httpx.Response:
    return httpx.Response(
        400, json={"error": {"code": "INVALID_PAYLOAD", "message": "elapsedMs is wrong"}}
    )


# -- version -------------------------------------------------------------------------------


def test_the_version_is_the_installed_metadata_s() -> None:
    assert timeback_client.__version__ == importlib.metadata.version("timeback-client")
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", timeback_client.__version__)


def test_sources_that_were_never_installed_have_a_version_that_says_so() -> None:
    assert installed_version("timeback-client-never-installed") == UNKNOWN_VERSION == "0+unknown"


def test_the_command_s_version_is_the_package_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"timeback-client {timeback_client.__version__}\n"


# -- User-Agent ----------------------------------------------------------------------------

SDK_AGENT = f"timeback-client/{timeback_client.__version__}"


@pytest.mark.anyio
async def test_every_heartbeat_names_the_sdk_then_httpx() -> None:
    """Retries included: each request carries ``timeback-client/<v> python-httpx/<v>``."""
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(httpx.Response(503))
    async with AsyncTimeback(BASE, transport=backend.transport, clock=clock, outbox=None) as tb:
        activity = _start(tb)
        await clock.advance(31)
        await activity.end()
    assert len(backend.seen) >= 3  # a 503, its retry, and the windows after
    expected = f"{SDK_AGENT} python-httpx/{httpx.__version__}"
    for seen in backend.seen:
        assert seen.headers.get_list("user-agent") == [expected]


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["User-Agent", "user-agent"])
async def test_the_app_s_own_user_agent_wins(name: str) -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    async with AsyncTimeback(
        BASE,
        headers={name: "my-kiosk/2.0", "Authorization": "Bearer t"},
        transport=backend.transport,
        clock=clock,
        outbox=None,
    ) as tb:
        activity = _start(tb)
        await clock.advance(15)
        tb.update_credentials(headers={"Authorization": "Bearer u"})  # no User-Agent now
        await clock.advance(15)
        await activity.end()
    agents = [seen.headers.get_list("user-agent") for seen in backend.seen]
    assert agents[0] == ["my-kiosk/2.0"]
    assert backend.seen[0].headers["authorization"] == "Bearer t"
    # New credentials without a User-Agent: the SDK's is back.
    assert agents[-1] == [f"{SDK_AGENT} python-httpx/{httpx.__version__}"]


@pytest.mark.anyio
async def test_a_caller_owned_pool_gets_the_sdk_s_agent_per_request_ahead_of_its_own() -> None:
    """The SDK's User-Agent is a request header: added to each heartbeat, whoever owns the
    pool, before the pool's own (httpx's, or the one the app set on its client)."""
    clock = VirtualClock()
    backend = FakeBackend(clock)
    async with (
        httpx.AsyncClient(transport=backend.transport) as plain,
        httpx.AsyncClient(transport=backend.transport, headers={"User-Agent": "pool/1"}) as own,
    ):
        for http in (plain, own):
            async with AsyncTimeback(BASE, http_client=http, clock=clock, outbox=None) as tb:
                activity = _start(tb)
                await clock.advance(15)
                await activity.end()
    agents = {seen.headers["user-agent"] for seen in backend.seen}
    assert agents == {f"{SDK_AGENT} python-httpx/{httpx.__version__}", f"{SDK_AGENT} pool/1"}


# -- logging -------------------------------------------------------------------------------


def test_the_library_logger_has_a_null_handler_and_leaves_levels_to_the_app() -> None:
    logger = logging.getLogger("timeback_client")
    assert any(type(h) is logging.NullHandler for h in logger.handlers)
    assert logger.level == logging.NOTSET
    assert logger.propagate


def test_the_package_logs_to_one_logger() -> None:
    """The README names one logger; no module of the package makes another."""
    for module in (
        "timeback_client",
        "timeback_client.emulator",
        "timeback_client.testing",
        "timeback_client.tools._cli",
        "timeback_client.tools._demo",
        "timeback_client.tools._simulate",
        "timeback_client.tools._emulator_process",
    ):
        importlib.import_module(module)
    names = {
        name
        for name in logging.Logger.manager.loggerDict
        if name.split(".")[0] == "timeback_client"
    }
    assert names == {"timeback_client"}


_REPORTED_ERROR = """
import logging, sys, time
import httpx
import timeback_client
from timeback_client import Timeback

mode = sys.argv[1]
if mode == "without-null-handler":
    logger = logging.getLogger("timeback_client")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
errors = []
reject = lambda request: httpx.Response(400, json={"error": {"code": "INVALID_PAYLOAD"}})
with Timeback("http://127.0.0.1:9/api/timeback", transport=httpx.MockTransport(reject),
              outbox=None) as timeback:
    activity = timeback.activity.start(
        id="lesson-1", name="Fractions", course={"subject": "Math", "grade": 3},
        on_error=(lambda error, context: errors.append(error)) if mode == "on_error" else None,
    )
    time.sleep(0.05)
    activity.end()
print(len(errors), type(errors[0]).__name__ if errors else "")
"""


def _run_script(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _REPORTED_ERROR, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.mark.parametrize("mode", ["on_error", "no callback"])
def test_a_reported_error_writes_nothing_on_stderr_when_the_app_configured_no_logging(
    mode: str,
) -> None:
    """A fresh interpreter (pytest's own log handlers would hide Python's last-resort one):
    a rejected window, told to on_error or not, leaves stderr empty."""
    done = _run_script(mode)
    assert done.stderr == ""
    assert done.stdout == ("1 InvalidPayloadError\n" if mode == "on_error" else "0 \n")


def test_without_the_null_handler_the_same_error_would_be_printed() -> None:
    """The control for the test above: it fails if the NullHandler goes."""
    done = _run_script("without-null-handler")
    assert "INVALID_PAYLOAD" in done.stderr


@pytest.mark.anyio
async def test_errors_told_to_on_error_are_logged_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rejected, unavailable, unauthenticated, unreachable, and undelivered at end: each
    reaches on_error, and the log has none of them above DEBUG."""
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(
        _rejection(),
        httpx.Response(503),
        httpx.Response(401, json={"error": {"code": "UNAUTHORIZED"}}),
    )
    errors: list[tuple[TimebackError, ErrorContext]] = []
    with caplog.at_level(logging.DEBUG, logger="timeback_client"):
        async with AsyncTimeback(BASE, transport=backend.transport, clock=clock, outbox=None) as tb:
            activity = _start(
                tb,
                time=TimeOptions(flush_timeout=0.2),
                on_error=lambda e, c: errors.append((e, c)),
            )
            await clock.advance(46)  # 400, 503 then 401: held for new credentials
            backend.responder = lambda request: httpx.ConnectError("unreachable")
            tb.update_credentials(headers={"Authorization": "Bearer new"})
            await clock.advance(5)
            await activity.end()
    kinds = {type(e).__name__ for e, _ in errors}
    assert {
        "InvalidPayloadError",
        "ServerUnavailableError",
        "AuthenticationError",
        "NetworkError",
        "UndeliveredError",
    } <= kinds
    ours = [r for r in caplog.records if r.name.startswith("timeback_client")]
    assert ours, "the DEBUG lines are there"
    assert [r.getMessage() for r in ours if r.levelno > logging.DEBUG] == []


@pytest.mark.anyio
async def test_without_on_error_a_problem_is_logged_as_a_warning_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(_rejection(), httpx.Response(503), httpx.Response(503))
    with caplog.at_level(logging.DEBUG, logger="timeback_client"):
        async with AsyncTimeback(BASE, transport=backend.transport, clock=clock, outbox=None) as tb:
            activity = _start(tb)
            await clock.advance(35)  # 400 at 15 s; 503, 503 and accepted from 30 s on
            await activity.end()
    assert [seen.status for seen in backend.seen] == [400, 503, 503, 204, 204]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2, warned  # the 400, and the first of the two 503s
    assert "INVALID_PAYLOAD" in warned[0]
    assert "503" in warned[1]


@pytest.mark.anyio
@pytest.mark.parametrize("told", [True, False])
async def test_a_replayed_window_s_error_is_logged_at_debug_when_on_error_hears_of_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, told: bool
) -> None:
    """Problems that belong to no activity (a window left by an earlier session) go to
    the client's on_error, and to the log only at DEBUG; without on_error, at WARNING."""
    clock = VirtualClock()
    path = tmp_path / "outbox.sqlite3"
    unreachable = FakeBackend(clock, responder=lambda request: httpx.ConnectError("down"))
    async with AsyncTimeback(
        BASE, transport=unreachable.transport, clock=clock, outbox=path, identity="ada"
    ) as tb:
        _start(tb, time=TimeOptions(flush_timeout=0.1), on_error=lambda e, c: None)
        await clock.advance(15)  # one window, unanswered: kept in the outbox at close
    errors: list[TimebackError] = []
    refusing = FakeBackend(clock, responder=lambda request: _rejection())
    with caplog.at_level(logging.DEBUG, logger="timeback_client"):
        async with AsyncTimeback(
            BASE,
            transport=refusing.transport,
            clock=clock,
            outbox=path,
            identity="ada",
            on_error=(lambda e, c: errors.append(e)) if told else None,
        ):
            await clock.advance(1)
    assert [seen.body["elapsedMs"] for seen in refusing.seen] == [15_000]
    levels = [r.levelno for r in caplog.records if "400 INVALID_PAYLOAD" in r.getMessage()]
    if told:
        assert [type(e).__name__ for e in errors] == ["InvalidPayloadError"]
        assert levels == [logging.DEBUG]
    else:
        assert levels == [logging.WARNING]


@pytest.mark.anyio
async def test_each_attempt_has_a_debug_line_and_no_credentials_anywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(httpx.Response(503), httpx.ReadTimeout("no answer"))

    class Failing(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Any:
            raise RuntimeError("the app's auth flow broke")
            yield request  # pragma: no cover

    with caplog.at_level(logging.DEBUG, logger="timeback_client"):
        async with AsyncTimeback(
            BASE,
            headers={"Authorization": f"Bearer {TOKEN}", "X-Api-Key": TOKEN},
            cookies={"session": COOKIE},
            transport=backend.transport,
            clock=clock,
            outbox=None,
        ) as tb:
            activity = _start(tb, on_error=lambda e, c: None)
            await clock.advance(21)  # 503, no answer, then accepted
            tb.update_credentials(auth=Failing())
            await clock.advance(15)
            tb.update_credentials(auth=httpx.BasicAuth("ada", TOKEN))
            await clock.advance(10)
            await activity.end()
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    text = "\n".join(formatter.format(r) for r in caplog.records)  # tracebacks included
    assert TOKEN not in text
    assert COOKIE not in text
    lines = [r.getMessage() for r in caplog.records if "heartbeat run=" in r.getMessage()]
    run = activity.run_id
    pattern = (
        rf"timeback heartbeat run={run} window=\S+ elapsed_ms=(\d+) paused_ms=(\d+) "
        r"attempt=(\d+) status=(\w+) latency_ms=(\d+): (.+)"
    )
    parsed = [re.fullmatch(pattern, line) for line in lines]
    assert all(parsed), lines
    seen = [(m[1], m[3], m[4], m[6]) for m in parsed if m]
    assert seen[:3] == [
        ("15000", "1", "503", "to retry: ServerUnavailableError"),
        ("15000", "2", "none", "to retry: NetworkError"),
        ("15000", "3", "204", "accepted"),
    ]
    assert ("15000", "1", "none", "to retry: NetworkError") in seen  # the app's auth flow
    latencies = [int(m[5]) for m in parsed if m and m[4] != "none"]
    assert latencies
    assert all(latency >= 0 for latency in latencies)
    # The broken auth flow's traceback is there, at DEBUG only.
    flows = [r for r in caplog.records if "auth flow raised" in r.getMessage()]
    assert flows
    assert {r.levelno for r in flows} == {logging.DEBUG}
    assert all(r.exc_info for r in flows)


# -- warnings ------------------------------------------------------------------------------


def test_timeback_warning_is_a_user_warning() -> None:
    assert issubclass(TimebackWarning, UserWarning)
    assert not issubclass(TimebackWarning, TimebackError)


@pytest.mark.parametrize("make", ["sync", "async"])
def test_plain_http_to_another_host_warns_at_the_app_s_line(make: str) -> None:
    url = "http://ada:pa55word@school.example/api/timeback"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if make == "sync":
            Timeback(url, outbox=None).close()
        else:
            AsyncTimeback(url, outbox=None)
    (warning,) = [w for w in caught if issubclass(w.category, TimebackWarning)]
    assert warning.filename == __file__
    text = str(warning.message)
    assert "school.example" in text
    assert "https" in text
    assert "pa55word" not in text
    assert "ada" not in text


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8787/api/timeback",
        "http://127.0.0.1:8787/api/timeback",
        "http://127.0.0.2/api/timeback",
        "http://[::1]:8787/api/timeback",
        "http://emulator.localhost/api/timeback",
        "https://school.example/api/timeback",
    ],
)
def test_local_hosts_and_https_do_not_warn(url: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AsyncTimeback(url, outbox=None)
    assert [w for w in caught if issubclass(w.category, TimebackWarning)] == []


def test_the_warning_obeys_the_app_s_filters() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TimebackWarning)
        with pytest.raises(TimebackWarning, match="plain http"):
            AsyncTimeback("http://school.example/api/timeback", outbox=None)
