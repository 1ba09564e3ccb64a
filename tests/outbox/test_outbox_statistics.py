"""`statistics()` tells what waits in the outbox: how many windows, their active ms, and
when the oldest started (what a kiosk shows as "3 minutes waiting to send")."""

from __future__ import annotations

from pathlib import Path

import pytest
from outbox_kit import AUTH, COURSE, STUDENTS, stored_windows, synced, wait_until, waiting_windows

from timeback_client import AsyncTimeback, TimebackError, TimeOptions
from timeback_client.emulator import Emulator, UnknownRun

pytestmark = pytest.mark.anyio

URL = "http://localhost/api/timeback"


def delivered_ms(emulator: Emulator, run_id: str) -> int:
    try:
        return emulator.run(run_id).active_ms
    except UnknownRun:  # nothing of it arrived yet
        return 0


async def test_statistics_count_what_waits_in_the_outbox_until_it_is_delivered(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    errors: list[TimebackError] = []  # the activity's: its windows' failed attempts
    with Emulator(students=STUDENTS) as emulator:
        emulator.faults.add(drop=True, count=1_000_000)  # offline: every connection dropped
        async with AsyncTimeback(
            URL,
            headers=AUTH,
            transport=emulator.transport(),
            outbox=outbox,
        ) as timeback:
            before = timeback.statistics().outbox
            assert before is not None
            assert (before.stored, before.stored_ms, before.oldest) == (0, 0, None)
            activity = timeback.activity.start(
                id="lesson-1",
                name="Fractions",
                course=COURSE,
                time=TimeOptions(heartbeat_interval=0.1, flush_timeout=5.0),
                on_error=lambda error, _context: errors.append(error),
            )
            # Heartbeats cut windows that the dropped connections leave waiting: wait for
            # three (a loaded machine runs them late, never fewer), then the pause cuts one
            # more.
            await wait_until(lambda: waiting_windows(timeback) >= 3, "three windows")
            activity.pause()
            await synced(outbox)
            waiting = timeback.statistics().outbox
            assert waiting is not None
            in_file = stored_windows(outbox)
            assert waiting.stored == in_file >= 4
            cut = activity.elapsed_ms
            # Every cut window waits; the open window's last bit is not a window yet.
            assert cut - 150 <= waiting.stored_ms <= cut
            assert waiting.oldest == activity.started_at

            emulator.faults.clear()  # online again: the backlog goes
            assert not await timeback.flush(timeout=20)
            assert delivered_ms(emulator, activity.run_id) >= waiting.stored_ms
            await synced(outbox)
            after = timeback.statistics().outbox
            assert after is not None
            assert (after.stored, after.stored_ms, after.oldest) == (0, 0, None)
            await activity.end()
        assert emulator.run(activity.run_id).active_ms == activity.elapsed_ms
    assert errors, "the dropped connections were reported"
