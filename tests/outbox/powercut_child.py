"""A real client session whose outbox runs on the power-cut VFS, driven by the power-cut
tests.

    python powercut_child.py OUTBOX IMAGES --seed N --cuts K [--synchronous NORMAL]
        [--max-windows M] [--preload FILE]

One activity (heartbeats every 0.2 s): online, then offline for a while (the emulator
drops every connection, windows pile up, and a small outbox merges them), paused and
resumed, then online again (the backlog is replayed), then ended. When OUTBOX already
holds what an earlier process left, the client replays it first. Meanwhile a thread cuts
the power K times at random instants and, for each cut ``i``, writes to IMAGES:

- ``cut-i/``: the outbox files as the cut leaves them;
- ``committed-i/``: the files as of the last committed transaction (what the writer had
  told its clients was stored);
- ``cut-i.json``: the run's active ms at the cut, and the heartbeats the emulator had
  accepted by then (their bodies, to replay into a fresh emulator).

The process ends with ``os._exit``: its SQLite connections go through Python callbacks,
which must not run while the interpreter is being torn down.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
from powercut import PowerCutVFS, sqlite_library

TOKEN = "tok-ada"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COURSE = {"subject": "Math", "grade": 3}
URL = "http://localhost/api/timeback"


class Accepting(httpx.AsyncBaseTransport):
    """The emulator's transport, noting each heartbeat it accepted (under the VFS's lock,
    so that a cut sees the emulator and the disk at one instant)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, vfs: PowerCutVFS) -> None:
        self.inner = inner
        self.vfs = vfs
        self.accepted: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        response = await self.inner.handle_async_request(request)
        if response.status_code < 300:
            with self.vfs.lock:
                self.accepted.append(base64.b64encode(body).decode())
        return response


@contextlib.contextmanager
def marking_commits(vfs: PowerCutVFS) -> Iterator[None]:
    """Tell the VFS when the outbox's transactions commit."""
    from timeback_client import _outbox

    original = _outbox.Outbox.transaction

    @contextlib.contextmanager
    def transaction(self: Any) -> Iterator[Any]:
        with original(self) as db:
            yield db
        vfs.mark_committed()

    _outbox.Outbox.transaction = transaction  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        _outbox.Outbox.transaction = original  # type: ignore[method-assign]


def write_cut(images: Path, index: int, vfs: PowerCutVFS, rng: random.Random, **meta: Any) -> None:
    cut = vfs.cut(rng, mode=meta["mode"])
    for kind, files in (("cut", cut.files), ("committed", cut.committed)):
        folder = images / f"{kind}-{index}"
        folder.mkdir()
        for path, content in files.items():
            image = folder / Path(path).name
            image.write_bytes(content)
            # A file's mode is set when it is made and survives the cut: the SDK makes its
            # files 0600 (an empty file that others may read would not be its own).
            image.chmod(0o600)
    (images / f"cut-{index}.json").write_text(json.dumps({**meta, "syncs": cut.syncs}))


async def session(args: argparse.Namespace, vfs: PowerCutVFS, rng: random.Random) -> None:
    from timeback_client import AsyncTimeback, TimeOptions
    from timeback_client.emulator import Emulator

    emulator = Emulator(students={TOKEN: "ada@example.edu"})
    transport = Accepting(emulator.transport(), vfs)
    if args.preload:  # what a backend had before this process: it dedupes against it
        transport.accepted = json.loads(await anyio.Path(args.preload).read_text())
        async with httpx.AsyncClient(transport=emulator.transport()) as http:
            for body in transport.accepted:
                await http.post(
                    URL + "/activity/heartbeat",
                    content=base64.b64decode(body),
                    headers={**AUTH, "content-type": "application/json"},
                )
    activity: Any = None
    done = threading.Event()

    def cutter(started: float, length: float) -> None:
        instants = sorted(rng.uniform(0, length) for _ in range(args.cuts))
        for index, at in enumerate(instants):
            time.sleep(max(0.0, started + at - time.monotonic()))
            with vfs.lock:
                active = activity.elapsed_ms if activity is not None else 0
                write_cut(
                    Path(args.images),
                    index,
                    vfs,
                    rng,
                    mode=rng.choice(("synced", "scrambled")),
                    run_id=activity.run_id if activity is not None else None,
                    active_ms=active,
                    accepted=list(transport.accepted),
                )
        done.set()

    online, offline, paused, back = 1.2, 2.0, 0.4, 2.0
    length = online + offline + back
    async with AsyncTimeback(
        URL, headers=AUTH, transport=transport, outbox=args.outbox, identity="ada"
    ) as timeback:
        thread = threading.Thread(target=cutter, args=(time.monotonic(), length), daemon=True)
        thread.start()
        activity = timeback.activity.start(
            id="lesson-1",
            name="Fractions",
            course=COURSE,
            time=TimeOptions(heartbeat_interval=0.2, flush_timeout=10.0),
        )
        await anyio.sleep(online)
        emulator.faults.add(drop=True, count=1_000_000)
        await anyio.sleep((offline - paused) / 2)
        activity.pause()
        await anyio.sleep(paused)
        activity.resume()
        await anyio.sleep((offline - paused) / 2)
        emulator.faults.clear()
        await anyio.sleep(back)
        await anyio.to_thread.run_sync(done.wait, 30.0)
        await activity.end()
    print(json.dumps({"run_id": activity.run_id, "errors": vfs.errors}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("outbox")
    parser.add_argument("images")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--cuts", type=int, required=True)
    parser.add_argument("--synchronous", default=None)
    parser.add_argument("--max-windows", type=int, default=6)
    parser.add_argument("--preload")
    args = parser.parse_args()
    library = sqlite_library()
    assert library is not None
    vfs = PowerCutVFS(library, Path(args.outbox).parent)
    vfs.install()
    from timeback_client import _outbox, _writer

    if args.synchronous:
        _outbox.SYNCHRONOUS = args.synchronous  # type: ignore[misc]
    _writer.Outbox = functools.partial(_outbox.Outbox, max_windows=args.max_windows)  # type: ignore[misc]
    with marking_commits(vfs):
        anyio.run(session, args, vfs, random.Random(args.seed))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
