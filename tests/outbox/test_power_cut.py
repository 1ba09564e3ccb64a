"""Power cuts: what the outbox calls stored survives one.

Real client sessions (`powercut_child.py`: online, offline with a small outbox that
merges, paused, online again with the backlog replayed, and some starting on what an
earlier cut left) run on the power-cut VFS (`powercut.py`), which cuts the power at random
instants: each cut leaves the outbox files with only what was synced, or with a random
part of the unsynced writes, lost, kept or torn. After the session's process is gone,
every cut is reopened here by a fresh client, against a fresh emulator that holds what
the backend had accepted by the instant of the cut, and must show:

- the outbox opens, undamaged, and nothing is set aside;
- every window of the last committed transaction reaches the backend;
- the run's active time lost is at most the checkpoint interval (plus a busy machine's
  margin), and no time is invented;
- nothing is counted twice.

The same cuts with ``synchronous=NORMAL`` (what the outbox used before) lose committed
windows: `test_without_a_sync_per_commit_a_power_cut_loses_stored_windows` shows the
suite can tell.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import anyio
import attrs
import httpx
import pytest
from outbox_kit import TALLY
from powercut import sqlite_library

from timeback_client import AsyncTimeback, TimebackError
from timeback_client._writer import CHECKPOINT_INTERVAL

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or sqlite_library() is None,
    reason="the power-cut VFS wraps the shared libsqlite3 the sqlite3 module uses, found "
    "through /proc/self/maps (Linux)",
)

CHILD: Final = Path(__file__).with_name("powercut_child.py")
TOKEN: Final = "tok-ada"
AUTH: Final = {"Authorization": f"Bearer {TOKEN}"}
URL: Final = "http://localhost/api/timeback"
# The last checkpoint is at most this old at a cut: the interval, plus what a busy machine
# adds to one transaction and its sync.
LOSS_BOUND_MS: Final = round(CHECKPOINT_INTERVAL * 1000) + 300
# The child reads the active time at the cut a few ms after the instant its outbox froze.
ROUNDING_MS: Final = 5
SESSIONS: Final = 8  # half of them start on what a cut of the other half left
CUTS_EACH: Final = 25


@attrs.frozen
class Outcome:
    """What reopening one cut showed."""

    mode: str
    stored: int  # windows in the last committed transaction
    lost: int  # of those, windows the backend never got
    lost_ms: int | None  # the run's active ms at the cut, less what the backend got
    runs: int  # runs the backend got time of (2: an earlier process's run was replayed)
    problems: tuple[str, ...]


def run_child(outbox: Path, images: Path, seed: int, *extra: str) -> dict[str, Any]:
    images.mkdir()
    done = subprocess.run(
        [sys.executable, str(CHILD), str(outbox), str(images), "--seed", str(seed), *extra],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert report["errors"] == [], report["errors"]
    return report


def sessions(tmp_path: Path, count: int, cuts: int, *extra: str) -> list[Path]:
    """Run ``count`` sessions, two waves in parallel; the second wave's sessions start on a
    cut of the first's (their outbox holds an earlier process's windows to replay)."""
    first = count // 2
    folders = [tmp_path / f"session-{n}" for n in range(count)]
    for folder in folders:
        (folder / "box").mkdir(parents=True)

    def run(n: int) -> None:
        folder = folders[n]
        more = list(extra)
        if n >= first:
            earlier = folders[n - first] / "images"
            pick = (n * 7) % cuts
            shutil.copytree(earlier / f"cut-{pick}", folder / "box", dirs_exist_ok=True)
            accepted = json.loads((earlier / f"cut-{pick}.json").read_text())["accepted"]
            (folder / "preload.json").write_text(json.dumps(accepted))
            more += ["--preload", str(folder / "preload.json")]
        outbox = folder / "box" / "outbox.sqlite3"
        run_child(outbox, folder / "images", n, "--cuts", str(cuts), *more)

    with ThreadPoolExecutor(max_workers=first) as pool:
        list(pool.map(run, range(first)))
    with ThreadPoolExecutor(max_workers=count - first) as pool:
        list(pool.map(run, range(first, count)))
    return [folder / "images" for folder in folders]


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def stored_windows(folder: Path, scratch: Path) -> list[tuple[str, int, int]]:
    """The windows in a copy of outbox files (run, started ms, ended ms)."""
    shutil.copytree(folder, scratch)
    db = sqlite3.connect(scratch / "outbox.sqlite3")
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if "windows" not in tables:
            return []
        query = "SELECT run_id, started_at_ms, ended_at_ms FROM windows"
        return [(str(r), int(s), int(e)) for r, s, e in db.execute(query)]
    finally:
        db.close()


def covered(window: tuple[str, int, int], spans: Sequence[tuple[int, int]]) -> bool:
    """Whether the backend's windows of the run cover this window's span."""
    _, start, end = window
    for begin, finish in sorted(spans):
        if begin <= start < finish:
            start = finish
        if start >= end:
            return True
    return start >= end


async def reopen(images: Path, index: int, scratch: Path) -> Outcome:
    """Reopen one cut with a fresh client against what the backend had at the cut."""
    from timeback_client.emulator import Emulator

    meta = json.loads((images / f"cut-{index}.json").read_text())
    stored = stored_windows(images / f"committed-{index}", scratch / "committed")
    box = scratch / "box"
    shutil.copytree(images / f"cut-{index}", box)
    emulator = Emulator(students={TOKEN: "ada@example.edu"})
    async with httpx.AsyncClient(transport=emulator.transport()) as http:
        for body in meta["accepted"]:
            answer = await http.post(
                URL + "/activity/heartbeat",
                content=base64.b64decode(body),
                headers={**AUTH, "content-type": "application/json"},
            )
            assert answer.status_code < 300, answer.text
    errors: list[TimebackError] = []
    with anyio.fail_after(30):
        async with AsyncTimeback(
            URL,
            headers=AUTH,
            transport=emulator.transport(),
            outbox=box / "outbox.sqlite3",
            identity="ada",
            on_error=errors.append,
        ):
            pass
    problems = [f"{type(e).__name__}: {e}" for e in errors]
    problems += [f"set aside: {p.name}" for p in box.glob("*.corrupt-*")]
    db = sqlite3.connect(box / "outbox.sqlite3")
    try:
        verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
        left = db.execute("SELECT count(*) FROM windows").fetchone()[0]
    finally:
        db.close()
    if verdict != "ok":
        problems.append(f"integrity_check: {verdict}")
    if left:
        problems.append(f"{left} windows still in the outbox after the replay")
    problems += [f"{p.rule}: {p.evidence}" for p in emulator.problems()]
    spans: dict[str, list[tuple[int, int]]] = {}
    for run in emulator.runs():
        spans[run.run_id] = [(_ms(w.started_at), _ms(w.ended_at)) for w in run.windows]
    lost = [w for w in stored if not covered(w, spans.get(w[0], []))]
    problems += [f"stored window lost: {w}" for w in lost]
    lost_ms = None
    if meta["run_id"] is not None:
        delivered = sum(r.active_ms for r in emulator.runs() if r.run_id == meta["run_id"])
        lost_ms = meta["active_ms"] - delivered
        if not -ROUNDING_MS <= lost_ms <= LOSS_BOUND_MS:
            problems.append(f"active {meta['active_ms']} ms at the cut, {delivered} delivered")
    emulator.close()
    return Outcome(
        mode=meta["mode"],
        stored=len(stored),
        lost=len(lost),
        lost_ms=lost_ms,
        runs=len(spans),
        problems=tuple(problems),
    )


def reopen_all(images: Sequence[Path], cuts: int, tmp_path: Path) -> list[Outcome]:
    outcomes: list[Outcome] = []

    async def each(n: int, folder: Path) -> None:
        for index in range(cuts):
            outcomes.append(await reopen(folder, index, tmp_path / f"reopen-{n}-{index}"))

    for n, folder in enumerate(images):  # the fresh clients run on asyncio and on trio
        anyio.run(each, n, folder, backend=("asyncio", "trio")[n % 2])
    return outcomes


def test_every_stored_window_survives_power_cuts_at_random_points(tmp_path: Path) -> None:
    images = sessions(tmp_path, SESSIONS, CUTS_EACH)
    outcomes = reopen_all(images, CUTS_EACH, tmp_path)
    failed = [o for o in outcomes if o.problems]
    losses = [o.lost_ms for o in outcomes if o.lost_ms is not None]
    TALLY.power_cuts = [
        f"power cuts reopened: {len(outcomes)} "
        f"({sum(o.mode == 'scrambled' for o in outcomes)} with unsynced writes scrambled)",
        f"windows stored at the cuts: {sum(o.stored for o in outcomes)}, "
        f"lost: {sum(o.lost for o in outcomes)}",
        f"active ms lost at a cut: worst {max(losses)}, median {sorted(losses)[len(losses) // 2]}",
        f"cuts with a problem: {len(failed)}",
    ]
    assert len(outcomes) >= 200
    assert sum(o.stored for o in outcomes) > len(outcomes), "the cuts must find windows stored"
    assert any(o.runs == 2 for o in outcomes), "some cuts must come while replaying"
    assert failed == [], failed[:5]


def test_without_a_sync_per_commit_a_power_cut_loses_stored_windows(tmp_path: Path) -> None:
    """The suite's teeth: the same sessions with ``synchronous=NORMAL`` lose windows the
    outbox had committed, and more than the checkpoint interval of time."""
    images = sessions(tmp_path, 2, 10, "--synchronous", "NORMAL")
    outcomes = reopen_all(images, 10, tmp_path)
    lost = sum(o.lost for o in outcomes)
    TALLY.power_cuts_normal = [
        f"with synchronous=NORMAL: {len(outcomes)} cuts, "
        f"{sum(o.stored for o in outcomes)} windows stored, {lost} lost, "
        f"{sum(bool(o.problems) for o in outcomes)} cuts with a problem",
    ]
    assert lost > 0
    assert max(o.lost_ms or 0 for o in outcomes) > LOSS_BOUND_MS
