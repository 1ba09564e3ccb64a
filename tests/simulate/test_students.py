"""The shared student plan: deterministic, well-formed, and driver-agnostic."""

from __future__ import annotations

import itertools

import pytest

from timeback_client.tools.students import (
    BUILTIN_LESSONS,
    Behaviour,
    Complete,
    End,
    Pause,
    Resume,
    Start,
    Step,
    Touch,
    Wait,
    student_plan,
)

# Short sessions and frequent completions, so a few hundred steps cover every branch.
LIVELY = Behaviour(session_mean=60.0, complete_chance=0.5, break_chance=0.2, idle_chance=0.2)


def _walk(limit_s: float, **kwargs: object) -> list[Step]:
    """Drive a plan as a driver would, answering each Start with a fresh run id."""
    plan = student_plan(**kwargs)  # type: ignore[arg-type]
    runs = (f"run-{n}" for n in itertools.count())
    steps: list[Step] = []
    elapsed = 0.0
    reply: str | None = None
    while elapsed < limit_s:
        step = plan.send(reply)
        steps.append(step)
        reply = next(runs) if isinstance(step, Start) else None
        if isinstance(step, Wait):
            elapsed += step.seconds
    plan.close()
    return steps


def test_the_same_seed_and_index_give_the_same_plan() -> None:
    args = {"index": 3, "seed": 42, "behaviour": LIVELY, "lessons": BUILTIN_LESSONS}
    assert _walk(3600, **args) == _walk(3600, **args)
    assert _walk(3600, **args) != _walk(3600, **{**args, "index": 4})


def test_sessions_are_well_formed_and_completions_start_a_fresh_run() -> None:
    steps = _walk(6 * 3600, index=1, seed=7, behaviour=LIVELY, lessons=BUILTIN_LESSONS)
    open_run: str | None = None
    paused = False
    completions = resumes_of_saved_run = 0
    last_run: str | None = None
    starts_seen = 0
    for step in steps:
        if isinstance(step, Wait):
            assert step.seconds >= 0
        elif isinstance(step, Start):
            assert open_run is None
            open_run = "open"
            resumes_of_saved_run += step.run_id is not None
            if step.run_id is not None:
                assert step.run_id == last_run  # comes back to the saved runId
            last_run = f"run-{starts_seen}"  # what _walk answers this Start with
            starts_seen += 1
        elif isinstance(step, (Touch, Pause, Resume)):
            assert open_run is not None, "input only while a session is open"
            if isinstance(step, Pause):
                assert not paused
                paused = True
            if isinstance(step, Resume):
                assert paused
                paused = False
        elif isinstance(step, End):
            assert open_run is not None
            assert not paused
            open_run = None
        elif isinstance(step, Complete):
            assert open_run is None, "completion is recorded after the session ends"
            completions += 1
    starts = [s for s in steps if isinstance(s, Start)]
    assert completions > 0
    assert resumes_of_saved_run > 0
    assert any(s.run_id is None for s in starts[1:]), "a completion is followed by a new run"


def test_without_a_record_hook_no_completion_is_planned() -> None:
    steps = _walk(
        6 * 3600, index=1, seed=7, behaviour=LIVELY, lessons=BUILTIN_LESSONS, can_complete=False
    )
    assert not any(isinstance(step, Complete) for step in steps)
    starts = [step for step in steps if isinstance(step, Start)]
    assert len(starts) > 2
    assert all(step.run_id is not None for step in starts[1:])


def test_a_driver_that_forgets_the_run_id_is_told() -> None:
    plan = student_plan(index=0, seed=1, behaviour=LIVELY, lessons=BUILTIN_LESSONS)
    assert isinstance(next(plan), Wait)
    assert isinstance(plan.send(None), Start)
    with pytest.raises(ValueError, match="run id back"):
        plan.send(None)


def test_an_empty_catalogue_is_refused() -> None:
    with pytest.raises(ValueError, match="lessons"):
        next(student_plan(index=0, seed=1, behaviour=LIVELY, lessons=()))
