"""Problem detection: each rule fires on its mistake, and a clean story has none."""

from __future__ import annotations

import httpx
import pytest
from emulator_bodies import BOB, completion, new_run, window

from timeback_client.emulator import RULES, Emulator

pytestmark = pytest.mark.anyio

HEARTBEAT = "/activity/heartbeat"


async def send(
    client: httpx.AsyncClient, *bodies: dict[str, object], token: str = "tok-ada"
) -> None:
    for body in bodies:
        response = await client.post(
            HEARTBEAT, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 204, response.text


def rules(emulator: Emulator) -> list[tuple[str, str]]:
    return [(problem.run_id, problem.rule) for problem in emulator.problems()]


async def test_a_clean_stateful_story_has_no_problems(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    first, second = new_run(), new_run()
    await send(
        client,
        window(first, "10:00:00.000", "10:00:15.000", 15000, 0),
        window(first, "10:00:15.000", "10:00:30.000", 10000, 5000),
        window(first, "12:00:00.000", "12:00:15.000", 15000, 0),  # resumed later
    )
    emulator.record(completion(first))  # at 12:30, the fixture's clock
    # A late retry of a window from before the completion is not a mistake.
    await send(client, window(first, "10:00:30.000", "10:00:45.000"))
    await send(client, window(second, "13:00:00.000", "13:00:15.000"))  # a new attempt
    assert emulator.problems() == ()


async def test_heartbeats_plus_record_time_is_double_counting(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await send(client, window(run_id))
    emulator.record(
        completion(run_id, time={"ended_at": "2026-11-25T10:00:15Z", "active_ms": 15000})
    )
    (problem,) = emulator.problems()
    assert (problem.run_id, problem.rule) == (run_id, "double-counting")
    assert "15000 active ms" in problem.evidence
    assert emulator.run(run_id).active_ms == 30000  # what Timeback would count


async def test_a_window_after_completion_is_a_reused_run(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await send(client, window(run_id))
    emulator.record(completion(run_id))  # at 12:30, the fixture's clock
    await send(client, window(run_id, "13:00:00.000", "13:00:15.000"))
    (problem,) = emulator.problems()
    assert (problem.run_id, problem.rule) == (run_id, "heartbeat-after-completion")
    # Written as every instant of the emulator's own: milliseconds and Z.
    assert "completed at 2026-11-25T12:30:00.000Z;" in problem.evidence


async def test_two_different_completions_on_one_run(emulator: Emulator) -> None:
    run_id = new_run()
    emulator.record(completion(run_id, time={"ended_at": "2026-11-25T10:00:00Z"}))
    emulator.record(completion(run_id, time={"ended_at": "2026-11-25T10:00:00Z"}))  # a retry
    assert "completed-twice" not in [rule for _, rule in rules(emulator)]
    emulator.record(completion(run_id, time={"ended_at": "2026-11-26T10:00:00Z"}))
    assert (run_id, "completed-twice") in rules(emulator)


async def test_overlapping_windows(client: httpx.AsyncClient, emulator: Emulator) -> None:
    run_id = new_run()
    await send(
        client,
        window(run_id, "10:00:00.000", "10:00:15.000"),
        window(run_id, "10:00:10.000", "10:00:25.000"),
    )
    (problem,) = emulator.problems()
    assert problem.rule == "overlapping-windows"
    assert "10:00:10.000Z" in problem.evidence


async def test_window_arithmetic(client: httpx.AsyncClient, emulator: Emulator) -> None:
    run_id = new_run()
    await send(client, window(run_id, "10:00:00.000", "10:00:15.000", 14000, 0))
    (problem,) = emulator.problems()
    assert problem.rule == "window-arithmetic"
    assert "spans 15000 ms" in problem.evidence
    assert "14000 + 0 = 14000" in problem.evidence


async def test_a_run_shared_by_two_students(client: httpx.AsyncClient, emulator: Emulator) -> None:
    run_id = new_run()
    await send(client, window(run_id))
    await send(client, window(run_id, "10:00:15.000", "10:00:30.000"), token="tok-bob")
    (problem,) = emulator.problems()
    assert problem.rule == "run-shared-by-students"
    assert BOB in problem.evidence


async def test_a_run_shared_by_two_activities(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await send(
        client,
        window(run_id),
        window(run_id, "10:00:15.000", "10:00:30.000", id="lesson-2"),
    )
    (problem,) = emulator.problems()
    assert problem.rule == "run-shared-by-activities"
    assert "lesson-2" in problem.evidence


async def test_problems_over_http(client: httpx.AsyncClient, emulator: Emulator) -> None:
    run_id = new_run()
    await send(client, window(run_id, elapsed_ms=1))
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as http:
        body = (await http.get("/_emulator/problems")).json()
    (problem,) = body["problems"]
    assert problem["runId"] == run_id  # the name every other answer uses
    assert problem["rule"] == "window-arithmetic"
    assert problem["evidence"]


def test_every_rule_is_documented() -> None:
    assert set(RULES) == {
        "double-counting",
        "heartbeat-after-completion",
        "completed-twice",
        "overlapping-windows",
        "window-arithmetic",
        "run-shared-by-students",
        "run-shared-by-activities",
    }


async def test_one_mistake_is_one_problem_listing_its_windows(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    """A runId reused after completion spoils every later window: one problem, all listed."""
    run_id = new_run()
    await send(client, window(run_id))
    emulator.record(completion(run_id))  # at 12:30, the fixture's clock
    late = [("13:00:00.000", "13:00:15.000"), ("13:00:15.000", "13:00:30.000")]
    late += [("13:00:30.000", "13:00:45.000"), ("13:00:45.000", "13:01:00.000")]
    await send(client, *(window(run_id, start, end) for start, end in late))
    (problem,) = emulator.problems()
    assert problem.rule == "heartbeat-after-completion"
    assert [(w.started_at[11:-1], w.ended_at[11:-1]) for w in problem.windows] == late
    assert problem.evidence.startswith("4 window(s) start after the run was completed")
    assert "and 1 more" in problem.evidence
    assert problem.fix.startswith("Start a new activity, with a fresh runId")
    served = problem.to_json()
    assert len(served["windows"]) == 4
    assert served["fix"] == problem.fix


async def test_overlaps_and_bad_arithmetic_are_one_problem_each(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await send(
        client,
        window(run_id, "10:00:00.000", "10:00:15.000"),
        window(run_id, "10:00:05.000", "10:00:20.000"),
        window(run_id, "10:00:10.000", "10:00:25.000", 14000, 0),
        window(run_id, "10:01:00.000", "10:01:15.000", 1, 0),
    )
    problems = {problem.rule: problem for problem in emulator.problems()}
    assert set(problems) == {"overlapping-windows", "window-arithmetic"}
    assert len(problems["overlapping-windows"].windows) == 3
    assert "3 overlap(s) among 3 windows" in problems["overlapping-windows"].evidence
    assert [w.elapsed_ms for w in problems["window-arithmetic"].windows] == [14000, 1]
