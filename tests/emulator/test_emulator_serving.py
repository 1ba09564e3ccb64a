"""Serving on a loopback socket: in a thread, and the blocking ``serve`` of the CLI."""

from __future__ import annotations

import argparse
import select
import socket
import subprocess
import sys
import time

import httpx
import pytest
from emulator_bodies import ADA, new_run, window

from timeback_client.emulator import Emulator, add_cli_arguments

HEARTBEAT = "/activity/heartbeat"


def test_serve_in_thread_is_fast_and_real(emulator: Emulator) -> None:
    started = time.monotonic()
    with emulator.serve_in_thread() as base_url:
        startup = time.monotonic() - started
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/api/timeback")
        response = httpx.post(
            base_url + HEARTBEAT,
            json=window(new_run()),
            headers={"Authorization": "Bearer tok-ada"},
        )
    assert startup < 1.0
    assert response.status_code == 204
    assert emulator.events()[0].student == ADA


def test_the_port_is_free_again_after_the_block(emulator: Emulator) -> None:
    with emulator.serve_in_thread() as base_url:
        port = httpx.URL(base_url).port
    assert port is not None
    with emulator.serve_in_thread(port=port) as again:
        assert httpx.get(again.removesuffix("/api/timeback") + "/_emulator/runs").status_code == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_two_emulators_serve_side_by_side() -> None:
    with (
        Emulator(students={"a": ADA}) as first,
        Emulator(students={"b": ADA}) as second,
        first.serve_in_thread() as first_url,
        second.serve_in_thread() as second_url,
    ):
        assert first_url != second_url
        body = window(new_run())
        assert (
            httpx.post(
                first_url + HEARTBEAT, json=body, headers={"Authorization": "Bearer a"}
            ).status_code
            == 204
        )
        assert (
            httpx.post(
                second_url + HEARTBEAT, json=body, headers={"Authorization": "Bearer b"}
            ).status_code
            == 204
        )
        assert len(first.events()) == len(second.events()) == 1


def test_a_busy_port_is_an_error(emulator: Emulator) -> None:
    with emulator.serve_in_thread() as base_url:
        port = httpx.URL(base_url).port
        assert port is not None
        with pytest.raises(OSError, match="in use"), emulator.serve_in_thread(port=port):
            pass


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args(
        ["--port", "9000", "--student", "t1=a@x.edu", "--student", "t2=b@x.edu", "--db", "e.db"]
    )
    assert (args.port, args.host, args.db) == (9000, "127.0.0.1", "e.db")
    assert dict(args.students) == {"t1": "a@x.edu", "t2": "b@x.edu"}
    assert parser.parse_args([]).port == 8787
    with pytest.raises(SystemExit):
        parser.parse_args(["--student", "no-equals-sign"])


@pytest.mark.skipif(sys.platform == "win32", reason="select() on a pipe: POSIX only")
def test_serve_prints_the_url_and_serves_until_stopped() -> None:
    code = (
        "from timeback_client.emulator import serve\n"
        "serve(port=0, students={'tok': 'ada@example.edu'})\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready
        first_line = process.stdout.readline()
        assert first_line.startswith("Timeback emulator: http://127.0.0.1:")
        base_url = first_line.split(": ", 1)[1].strip()
        response = httpx.post(
            base_url + HEARTBEAT, json=window(new_run()), headers={"Authorization": "Bearer tok"}
        )
        assert response.status_code == 204
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_a_connection_still_open_when_serving_ends_is_closed_not_left_to_the_collector(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn asks each connection it knows of to close when it stops; one accepted in the
    instant it stops (a client's request racing the shutdown) is not among them, and after
    the graceful timeout uvicorn left it open as its loop ended: a socket for the garbage
    collector, and a ResourceWarning in whatever test ran next. Skipping uvicorn's request
    to close stands in for that race."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    with emulator.serve_in_thread() as base_url:
        url = httpx.URL(base_url)
        assert url.port is not None
        client = socket.create_connection(("127.0.0.1", url.port))
        client.sendall(b"GET /_emulator/runs HTTP/1.1\r\nHost: emulator\r\n\r\n")
        client.settimeout(5)
        answer = b""
        while not answer.endswith(b'{"runs":[]}'):  # the whole answer, however it arrives
            chunk = client.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        monkeypatch.setattr(H11Protocol, "shutdown", lambda self: None)
    try:
        # The server closed its end before serving ended: the client reads the end of the
        # stream at once instead of waiting.
        readable, _, _ = select.select([client], [], [], 0)
        assert readable, "the server's end of the connection is still open"
        assert client.recv(4096) == b""
    finally:
        client.close()
