"""A reusable checker of the contract's window invariants, for any list of heartbeat bodies."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from timeback_client import Window

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FIELDS = {"id", "name", "course", "runId", "startedAt", "endedAt", "elapsedMs", "pausedMs"}


def check_windows(
    bodies: Sequence[Mapping[str, Any]], *, gaps_at: Iterable[int] = (), exact_gaps: bool = True
) -> dict[str, list[Window]]:
    """Check every invariant the contract asks of a client, per run, in delivery order.

    - each body has exactly the contract's fields, ``elapsedMs`` and ``pausedMs`` are JSON
      integers >= 0 (not floats, not bools), timestamps are ISO 8601 UTC with ms and ``Z``;
    - ``endedAt - startedAt == elapsedMs + pausedMs`` and the window is not empty;
    - windows of a run are contiguous (``startedAt`` = previous ``endedAt``) except where a
      clean slate is expected: a gap must start exactly at an epoch ms in ``gaps_at``, and
      every instant in ``gaps_at`` must be such a gap (unless ``exact_gaps`` is False: then
      ``gaps_at`` only lists where a gap may start);
    - no two windows of a run share a ``startedAt``, and they go forward in time.

    Returns the windows, grouped by run id.
    """
    expected_gaps = set(gaps_at)
    runs: dict[str, list[Window]] = {}
    for body in bodies:
        assert set(body) == FIELDS, f"fields {sorted(body)}"
        for key in ("elapsedMs", "pausedMs"):
            assert type(body[key]) is int, f"{key} is {body[key]!r}, not a JSON integer"
            assert body[key] >= 0
        for key in ("startedAt", "endedAt"):
            assert TIMESTAMP.match(body[key]), f"{key} {body[key]!r}"
        window = Window.from_json(body)  # refuses broken arithmetic
        assert window.ended_at_ms > window.started_at_ms, f"empty window {body}"
        runs.setdefault(window.run_id, []).append(window)

    seen_gaps: set[int] = set()
    for run_id, windows in runs.items():
        starts = [w.started_at_ms for w in windows]
        assert len(starts) == len(set(starts)), f"run {run_id}: two windows share a start"
        for before, after in itertools.pairwise(windows):
            assert after.started_at_ms >= before.ended_at_ms, f"overlap: {before} / {after}"
            if after.started_at_ms != before.ended_at_ms:
                assert after.started_at_ms in expected_gaps, (
                    f"run {run_id}: unexpected gap {before.ended_at} -> {after.started_at}"
                )
                seen_gaps.add(after.started_at_ms)
    if exact_gaps:
        assert seen_gaps == expected_gaps, f"expected gaps not seen: {expected_gaps - seen_gaps}"
    return runs


def total_active_ms(bodies: Iterable[Mapping[str, Any]]) -> int:
    """The sum of ``elapsedMs``."""
    return sum(int(body["elapsedMs"]) for body in bodies)
