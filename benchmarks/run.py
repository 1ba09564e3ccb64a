"""Run every benchmark, each beside its baseline, and write ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/run.py            # the full run (about 50 minutes)
    .venv/bin/python benchmarks/run.py --quick    # a smoke run at tiny sizes (about 1 min)

Every measurement runs in a fresh child interpreter (see `_bench.child`); the server is
the backend emulator in a process of its own, on loopback, shared by a figure and its
baseline. Figures are medians over ``--repeats`` runs, the baseline interleaved with the
SDK so drift hits both alike. Anything below the ``<!-- analysis -->`` marker of an
existing results file is kept: that is where the causes of missed goals are written up.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _bench import EMAIL, HERE, TOKEN, child, machine, median
from bench_emulator import parity_python, python_version, serve

from timeback_client.tools._emulator_process import EmulatorProcess

CPU_LABELS = {
    "bare": "bare `httpx.AsyncClient.post` loop, 8 sender tasks (the floor)",
    "sdk": "SDK, `outbox=None`",
    "sdk-outbox": "SDK, default durable outbox",
    "sdk-own-engines": "SDK, default outbox, own engines (`http_client=` alone)",
}
MEMORY_LABELS = {
    "sdk": "SDK, `outbox=None`",
    "sdk-outbox": "SDK, default durable outbox",
    "sdk-own-engines": "SDK, default outbox, own engines",
}
#: The last commit whose emulator numbered attempts by decoding every event and built each
#: run by filtering all events: figure 10's "before".
EMULATOR_BASELINE = "332800d"
#: The last commit whose clients waited at their start for the outbox, each loaded the CA
#: bundle into a TLS context of its own and each blocking one started a loop thread of
#: its own: figure 12's "before".
SIGNIN_BASELINE = "346e80f"
# Figure 3's "before": the SDK before fewer objects per student were tracked by the GC.
PUNCTUALITY_BASELINE = "69bc1b7"
#: Figure 3's rows at 10,000 students, in the order they run and show.
ROWS_AT_SCALE = ("before", "sdk", "freeze", "locust", "bare")
#: Figure 3's Locust worker: the students one worker core carries on this machine (3.5 ms
#: of CPU per heartbeat at 15 s when it was set: 70% of a core), not the 10,000 of one Engine.
LOCUST_PUNCTUALITY_STUDENTS = 3000
#: Figure 11's "before": the last Locust worker that parsed Locust's own options again for
#: every option of every spawn message.
LOCUST_BASELINE = "70a5d63"
#: Figure 11's goal besides the ratio: students per worker core at 15 s (2.0 ms of CPU per
#: heartbeat, which the summary checks at any interval).
LOCUST_STUDENTS_PER_CORE = 7500
ANALYSIS_MARKER = "<!-- analysis: everything below is kept when the results are rewritten -->"
KIB = 1024


def _ok(met: bool) -> str:
    return "met" if met else "**missed**"


def _f(value: float, digits: int = 2) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:,.{digits}f}")
    )


class Runner:
    """Runs the benchmarks at one size and collects the Markdown for each figure."""

    def __init__(self, quick: bool, repeats: int, emulator: EmulatorProcess) -> None:
        self.quick = quick
        self.repeats = repeats
        self.url = emulator.base_url
        self.origin = emulator.origin
        self.summary: list[tuple[str, str, str, str, str]] = []  # figure, sdk, base, goal, met
        self.sections: list[str] = []
        self.emulator_baseline = EMULATOR_BASELINE

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def repeat(self, script: str, *args: str) -> list[dict[str, Any]]:
        return [child(script, *args) for _ in range(self.repeats)]

    # -- 1 -----------------------------------------------------------------------------

    def cpu(self) -> None:
        configs = (
            ((20, 0.3, 0.6, self.repeats),)
            if self.quick
            else ((1000, 4.0, 20.0, max(self.repeats, 5)), (2000, 15.0, 30.0, self.repeats))
        )
        lines = [
            "## 1. CPU per delivered heartbeat",
            "",
            "N students, one window each per interval, starts staggered over one interval, "
            "through one `httpx.AsyncClient` to the emulator in its own process, at most 8 "
            "requests in flight. The floor is a bare loop: a task per student builds its "
            "window's body on schedule and hands it to 8 sender tasks that post it. The SDK "
            "runs one `AsyncTimeback` and one activity per student, every client on one "
            "`Engine`; *own engines* is each client on the shared `httpx.AsyncClient` with an "
            "engine of its own (what `http_client=` alone gives). Client-process CPU "
            "(`time.process_time`, every thread) over the measured stretch, after two "
            "intervals of start-up and warm-up, divided by the windows the server accepted "
            "meanwhile. The modes run interleaved, and each SDK run is divided by the bare "
            "run just before it: the *ratio* is the median of those pairs (this machine's "
            "speed drifts by 20% from run to run; a pair shares the drift).",
            "",
            "| students | interval | client | CPU per heartbeat (median) | runs | ratio to bare "
            "(median of pairs) | pairs | goal | met |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        goals = {"sdk": 1.05, "sdk-outbox": 1.15}
        for k, interval, seconds, repeats in configs:
            self.log(f"1. CPU: {k} students at {interval} s, {seconds} s x {repeats}")
            modes = ("bare", "sdk", "sdk-outbox") + (("sdk-own-engines",) if k <= 1000 else ())
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
            for _ in range(repeats):
                for mode in modes:
                    runs[mode].append(
                        child(
                            "bench_cpu.py",
                            mode,
                            self.url,
                            "--activities",
                            str(k),
                            "--interval",
                            str(interval),
                            "--seconds",
                            str(seconds),
                        )
                    )
            all_bare = [r["cpu_ms_per_heartbeat"] for r in runs["bare"]]
            # A run with no window delivered in its stretch (a machine too busy to start
            # its students in time) has no figure: it and its pair are left out, and said.
            bare = [b for b in all_bare if b is not None]
            for mode in modes:
                every = [r["cpu_ms_per_heartbeat"] for r in runs[mode]]
                values = [v for v in every if v is not None]
                pairs = [
                    v / b
                    for v, b in zip(every, all_bare, strict=True)
                    if v is not None and b is not None
                ]
                if len(values) < len(every):
                    self.log(f"   {mode}: {len(every) - len(values)} run(s) delivered nothing")
                if not pairs:
                    lines.append(f"| {k:,} | {interval:g} s | {CPU_LABELS[mode]} | no figure |")
                    continue
                ratio = median(pairs)
                goal = goals.get(mode)
                verdict = "" if goal is None else _ok(ratio <= goal)
                lines.append(
                    f"| {k:,} | {interval:g} s | {CPU_LABELS[mode]} | {_f(median(values), 3)} ms "
                    f"| {', '.join(_f(v, 3) for v in values)} | {ratio:.2f}x | "
                    f"{', '.join(f'{p:.2f}' for p in pairs)} | "
                    f"{'' if goal is None else f'<= {goal:.2f}x'} | {verdict} |"
                )
                if goal is not None:
                    self.summary.append(
                        (
                            f"1. CPU/heartbeat, {CPU_LABELS[mode]}, {k:,} at {interval:g} s",
                            f"{_f(median(values), 3)} ms",
                            f"{_f(median(bare), 3)} ms (bare)",
                            f"ratio <= {goal:.2f}",
                            f"{ratio:.2f}x, {verdict}",
                        )
                    )
            writer = [r["thread_cpu_s"] for r in runs["sdk-outbox"]]
            lines.append(
                f"| | | *of which the outbox writer thread* | "
                f"{_f(median([_writer_share(w) for w in writer]) * 100, 1)}% of the CPU | | | "
                "| | |"
            )
        self.sections.append("\n".join(lines))

    # -- 2 -----------------------------------------------------------------------------

    def memory(self) -> None:
        sizes = (200,) if self.quick else (1000, 10000)
        self.log(f"2. memory per student at {sizes} x {self.repeats}")
        lines = [
            "## 2. Memory per running student",
            "",
            "N students started in a fresh process, before their first heartbeat is due. Each "
            "SDK student is a task holding its own `AsyncTimeback`, all on one `Engine`, with "
            "one running activity; a *holder* (a task waiting on an event) is what holding a "
            "client open costs the benchmark, and is subtracted. **Net SDK cost = SDK student "
            "- holder** (client, pipeline, activity, timekeeper and ledger, the scheduler's "
            "entry, and with the outbox its owner and checkpoint); **extra = net - bare "
            "sleeping anyio task**. Python heap growth by `tracemalloc` and RSS growth "
            f"(`/proc/self/statm`) over N, median of {self.repeats} runs each.",
            "",
            "| N | method | client | bare task | holder | SDK student | net SDK | extra vs "
            "bare task | goal | met |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        kinds = ("sdk-outbox", "sdk") + (() if self.quick else ("sdk-own-engines",))
        for n in sizes:
            for method in ("tracemalloc", "rss"):
                flag = ("--rss",) if method == "rss" else ()

                def per(kind: str, n: int = n, flag: tuple[str, ...] = flag) -> float:
                    return median(
                        [
                            r["bytes_per_item"]
                            for r in self.repeat("bench_memory.py", kind, str(n), *flag)
                        ]
                    )

                task, holder = per("task"), per("holder")
                for kind in kinds:
                    if kind != "sdk-outbox" and (method == "rss" or n > 1000):
                        continue  # the figures of the goals, and a few for comparison
                    student = per(kind)
                    net = student - holder
                    extra = net - task
                    goal, met = "", ""
                    if kind == "sdk-outbox" and method == "tracemalloc":
                        goal, met = "extra <= 4 KiB", _ok(extra <= 4 * KIB)
                    if kind == "sdk-outbox" and method == "rss" and n >= 10000:
                        goal, met = "net <= 8 KiB", _ok(net <= 8 * KIB)
                    lines.append(
                        f"| {n:,} | {method} | {MEMORY_LABELS[kind]} | {task / KIB:.2f} KiB | "
                        f"{holder / KIB:.2f} KiB | {student / KIB:.2f} KiB | {net / KIB:.2f} KiB "
                        f"| {extra / KIB:+.2f} KiB | {goal} | {met} |"
                    )
                    if goal:
                        self.summary.append(
                            (
                                f"2. memory per student ({method}), {n:,} students",
                                f"{net / KIB:.2f} KiB",
                                f"{task / KIB:.2f} KiB (bare task)",
                                goal,
                                f"{extra / KIB:+.2f} KiB extra, {met}"
                                if method == "tracemalloc"
                                else f"{net / KIB:.2f} KiB, {met}",
                            )
                        )
        self.sections.append("\n".join(lines))

    # -- 3 -----------------------------------------------------------------------------

    def punctuality(self, tools_only: bool = False) -> None:
        """``tools_only``: only 10,000 students, only the rows of simulate's and a Locust
        worker's settings, and the floor."""
        configs: Sequence[tuple[int, float, float, float]] = (
            ((30, 0.3, 1.5, 50.0),)
            if self.quick
            else ((10000, 15.0, 60.0, 50.0),)
            if tools_only
            else ((1000, 1.0, 60.0, 50.0), (10000, 15.0, 60.0, 50.0))
        )
        repeats = self.repeats if self.quick else 2
        lines = [
            "## 3. Heartbeat punctuality and scale",
            "",
            "N students (one `AsyncTimeback` each, all on one `Engine`, the default durable "
            "outbox in a temporary directory), starts staggered evenly over one interval, each "
            "running for the stated time against the emulator in its own process; then every "
            "run is read back from the emulator. The *bare* rows run the floor in the same "
            "conditions: a task per student that cuts its window at the wall instant it wakes "
            "and hands it to 8 sender tasks. **Lateness** of a heartbeat = its window's "
            "`endedAt` minus the instant it was due on the run's own schedule (`startedAt` of "
            "the run + k x interval); **missed** = beats that never came. *Delivery* = the "
            "server's `receivedAt` minus `endedAt`: when it grows, sending no longer keeps up "
            "(the client and the emulator share this machine's 2 cores). *Full GCs*: the "
            "cyclic garbage collector's full collections while the run lasted, and the longest "
            "(every task waits for one). *Tracked*: the objects the collector tracks per "
            "running student once all have started (`gc.get_objects()`, the benchmark's own "
            "task included), which every full collection walks. At 1,000 students: medians of "
            f"{repeats} runs. At 10,000: the **worst** of {max(3, self.repeats)} runs of each "
            f"row, interleaved; *before* is commit `{PUNCTUALITY_BASELINE}`'s SDK (`git "
            "archive`). *As simulate runs it*: `outbox=None` (each student's app would have a "
            "file of its own) and `gc.freeze()` once every student has started, as `simulate` "
            "and a Locust worker do. *Locust worker*: students in a Locust master and one "
            f"worker, {LOCUST_PUNCTUALITY_STUDENTS:,} of them (what one worker core carries "
            "here at 15 s; 10,000 take about two cores; `bench_locust.py steady`: students "
            "who only work, input every 3-12 s, arriving at Locust's spawn rate over one "
            "interval, the test lasting one interval more than the others' students each do), "
            "their runs read back "
            "alike; its *client CPU* is the worker's. This machine is shared with other work "
            "and noisy: run it more than once before trusting one figure.",
            "",
            "| students | interval | client | heartbeats | lateness p50 | lateness p99 | max | "
            "missed | delivery p50 / p99 | full GCs (longest) | tracked | client CPU | goal | "
            "met |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n, interval, seconds, goal in configs:
            args: tuple[str, ...] = (self.url, self.origin, "--activities", str(n))
            args += ("--interval", str(interval), "--seconds", str(seconds))
            if n < 10000:
                self.log(f"3. punctuality: {n} at {interval} s for {seconds} s x {repeats}")
                sdk = [child("bench_punctuality.py", *args) for _ in range(repeats)]
                bare = [child("bench_punctuality.py", *args, "--bare") for _ in range(repeats)]
                lines.append(self._punctuality_row(sdk, "SDK, default durable outbox", goal))
                lines.append(self._punctuality_row(bare, "bare (the floor)", None))
                self._punctuality_summary(n, interval, "default outbox", sdk, bare, goal, median)
                continue
            self._punctuality_at_scale(lines, args, n, interval, goal, tools_only)
        self.sections.append("\n".join(lines))

    def _punctuality_at_scale(
        self,
        lines: list[str],
        args: tuple[str, ...],
        n: int,
        interval: float,
        goal: float,
        tools_only: bool = False,
    ) -> None:
        """At 10,000 students: before, after (an app's setting), as simulate runs it, a
        Locust worker and the floor, interleaved, the worst run of each; ``tools_only``:
        the tools' rows and the floor."""
        repeats = max(3, self.repeats)
        kinds = ("freeze", "locust", "bare") if tools_only else ROWS_AT_SCALE
        self.log(f"3. punctuality: {n} at {interval} s, {len(kinds)} rows x {repeats}, worst")
        rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in ROWS_AT_SCALE}
        # A Locust worker is one process on one core: the students one core carries here.
        students = min(n, LOCUST_PUNCTUALITY_STUDENTS)
        steady: tuple[str, ...] = (self.url, "--students", str(students))
        steady += ("--interval", str(interval), "--seconds", str(float(args[-1]) + interval))
        with tempfile.TemporaryDirectory() as workdir:
            before_src = _baseline_sources(PUNCTUALITY_BASELINE, Path(workdir))
            runs: dict[str, Callable[[], dict[str, Any]]] = {
                "sdk": lambda: child("bench_punctuality.py", *args),
                "freeze": lambda: child("bench_punctuality.py", *args, "--freeze", "--no-outbox"),
                "bare": lambda: child("bench_punctuality.py", *args, "--bare"),
                "locust": lambda: child("bench_locust.py", "steady", *steady),
            }
            if before_src is not None:
                runs["before"] = lambda: child("bench_punctuality.py", *args, pythonpath=before_src)
            for _ in range(repeats):
                for kind in kinds:
                    if kind in runs:
                        rows[kind].append(runs[kind]())
        worst = _worst_run
        labels = {
            "before": f"SDK before (`{PUNCTUALITY_BASELINE}`), Python's GC defaults",
            "sdk": "SDK, Python's GC defaults (an app)",
            "freeze": "SDK as `simulate` runs it: `outbox=None`, `gc.freeze()` after the starts",
            "locust": "Locust worker (students who only work), `gc.freeze()` after spawning",
            "bare": "bare (the floor)",
        }
        for kind in ROWS_AT_SCALE:
            if rows[kind]:
                has_goal = kind in ("sdk", "freeze", "locust")
                row = self._punctuality_row(
                    rows[kind], labels[kind], goal if has_goal else None, pick=worst
                )
                lines.append(row)
        summaries = (
            ("locust", "Locust worker"),
            ("sdk", "GC defaults"),
            ("freeze", "as simulate runs it"),
        )
        for kind, client in summaries:
            if rows[kind]:
                count = students if kind == "locust" else n
                self._punctuality_summary(
                    count, interval, client, rows[kind], rows["bare"], goal, _worst_p99
                )

    def _punctuality_summary(
        self,
        n: int,
        interval: float,
        client: str,
        sdk: list[dict[str, Any]],
        bare: list[dict[str, Any]],
        goal: float,
        pick: Callable[[Sequence[float]], float],
    ) -> None:
        p99 = pick([r["lateness_p99_ms"] for r in sdk])
        missed = max(r["missed"] for r in sdk)
        self.summary.append(
            (
                f"3. p99 lateness, {n:,} students at {interval:g} s, {client}",
                f"{_f(p99, 0)} ms, {missed:.0f} missed",
                f"{_f(pick([r['lateness_p99_ms'] for r in bare]), 0)} ms (bare)",
                f"<= {goal:.0f} ms, 0 missed",
                _ok(p99 <= goal and missed == 0),
            )
        )

    @staticmethod
    def _punctuality_row(
        runs: list[dict[str, Any]],
        client: str,
        goal: float | None,
        pick: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    ) -> str:
        """One row: the median of each figure, or with ``pick`` the figures of one run."""
        chosen = None if pick is None else pick(runs)

        def med(key: str) -> float:
            if chosen is not None:
                return float(chosen.get(key, float("nan")))
            return median([r.get(key, float("nan")) for r in runs])

        def gcs() -> str:  # a Locust worker's collections are not counted
            if "full_gcs" not in runs[0]:
                return "-"
            return f"{med('full_gcs'):.0f} ({_f(med('full_gc_max_ms'), 0)} ms)"

        met = "" if goal is None else _ok(med("lateness_p99_ms") <= goal and med("missed") == 0)
        return (
            f"| {med('runs'):,.0f} | {runs[0]['interval']:g} s | {client} | "
            f"{med('heartbeats'):,.0f} | {_f(med('lateness_p50_ms'), 0)} ms | "
            f"{_f(med('lateness_p99_ms'), 0)} ms | {_f(med('lateness_max_ms'), 0)} ms | "
            f"{med('missed'):.0f} | {_f(med('delivery_p50_ms'), 0)} / "
            f"{_f(med('delivery_p99_ms'), 0)} ms | {gcs()} | "
            f"{_f(med('tracked_per_student'), 1) if 'tracked_per_student' in runs[0] else '-'} | "
            f"{med('client_cpu_share'):.0%} | "
            f"{'' if goal is None else f'p99 <= {goal:.0f} ms, 0 missed'} | {met} |"
        )

    # -- 4 -----------------------------------------------------------------------------

    def accuracy(self) -> None:
        seconds, sessions, hours = (2.0, 2, 1.0) if self.quick else (60.0, 5, 8.0)
        self.log(f"4. accuracy: {sessions} real sessions of {seconds} s; {hours} h virtual")
        real = child(
            "bench_accuracy.py",
            "real",
            self.url,
            self.origin,
            "--seconds",
            str(seconds),
            "--sessions",
            str(sessions),
        )
        virtual = self.repeat("bench_accuracy.py", "virtual", "--hours", str(hours))
        worst = real["max_abs_error_ms"]
        exact = all(r["exact"] for r in virtual)
        v = virtual[0]
        lines = [
            "## 4. Accuracy",
            "",
            f"**Real clock**: {sessions} sessions side by side, {seconds:g} s each, each "
            "paused once for a tenth of it, heartbeats every 5 s, against the emulator in its "
            "own process. Measured = `time.monotonic_ns()` read just before `start()`, "
            "`pause()`, `resume()`, `end()`; reported = the run's `activeMs` at the emulator.",
            "",
            "| reported - measured, per session | worst | goal <= 2 ms |",
            "|---|---|---|",
            f"| {', '.join(f'{e:+.3f} ms' for e in real['errors_ms'])} | {worst:.3f} ms | "
            f"{_ok(worst <= 2)} |",
            "",
            f"**Virtual clock**: a {v['hours']}-hour session (each hour: 25 min of work "
            "with a touch every 30 s, a 3 min idle spell that the SDK turns into a pause after "
            "`idle_timeout=60`, 25 min of work, a 7 min break), in-process emulator.",
            "",
            "| planned active | reported active | windows | problems | exact | wall time |",
            "|---|---|---|---|---|---|",
            f"| {v['planned_active_ms']:,} ms | {v['reported_active_ms']:,} ms | "
            f"{v['windows']:,} | {', '.join(v['problems']) or 'none'} | "
            f"{'yes' if exact else '**no**'} ({len(virtual)} of {len(virtual)} runs"
            f"{'' if exact else ' NOT all'}) | "
            f"{median([r['wall_s'] for r in virtual]):.2f} s |",
        ]
        self.summary.append(
            ("4. accuracy, real clock", f"{worst:.3f} ms worst", "-", "<= 2 ms", _ok(worst <= 2))
        )
        self.summary.append(
            (
                f"4. accuracy, {v['hours']} h virtual clock",
                f"{v['reported_active_ms']:,} ms",
                f"{v['planned_active_ms']:,} ms planned",
                "exact",
                _ok(exact),
            )
        )
        self.sections.append("\n".join(lines))

    # -- 5 -----------------------------------------------------------------------------

    def end(self) -> None:
        n_loop, n_down, flush = (10, 2, 0.3) if self.quick else (200, 20, 1.0)
        self.log("5. end() latency")
        loop = self.repeat(
            "bench_end.py", "loopback", self.url, "--n", str(n_loop), "--flush-timeout", str(flush)
        )
        down = child("bench_end.py", "down", "--n", str(n_down), "--flush-timeout", str(flush))
        hanging = child(
            "bench_end.py", "hanging", "--n", str(n_down), "--flush-timeout", str(flush)
        )
        limit = flush * 1000 + 50
        lines = [
            "## 5. `end()` latency",
            "",
            f"One client; each time an activity is started, runs 20 ms, and `await "
            f"activity.end()` is timed. `flush_timeout={flush:g}` s. *Down*: nothing listens "
            "on the port (connection refused, retried with backoff); *hanging*: a socket that "
            "accepts and never answers. CPU is this process's CPU time over wall time while it "
            "ran (retrying must not keep a core busy).",
            "",
            "| server | ends | p50 | p99 | max | CPU | goal | met |",
            "|---|---|---|---|---|---|---|---|",
        ]
        loop_p50 = median([r["p50_ms"] for r in loop])
        loop_p99 = median([r["p99_ms"] for r in loop])
        lines.append(
            f"| loopback (emulator), median of {len(loop)} runs | {n_loop} | "
            f"{_f(loop_p50)} ms | {_f(loop_p99)} ms | "
            f"{_f(median([r['max_ms'] for r in loop]))} ms | "
            f"{median([r['cpu_share'] for r in loop]):.0%} | <= {limit:.0f} ms | "
            f"{_ok(loop_p99 <= limit)} |"
        )
        self.summary.append(
            ("5. end() p50 / p99, loopback", f"{_f(loop_p50)} / {_f(loop_p99)} ms", "-", "-", "-")
        )
        for name, result in (("down", down), ("hanging", hanging)):
            met = result["p99_ms"] <= limit
            lines.append(
                f"| {name} | {n_down} | {_f(result['p50_ms'])} ms | {_f(result['p99_ms'])} ms "
                f"| {_f(result['max_ms'])} ms | {result['cpu_share']:.0%} | <= {limit:.0f} ms "
                f"| {_ok(met)} |"
            )
            self.summary.append(
                (
                    f"5. end() p99, server {name}",
                    f"{_f(result['p99_ms'])} ms",
                    "-",
                    f"<= flush_timeout + 50 = {limit:.0f} ms",
                    _ok(met),
                )
            )
        self.sections.append("\n".join(lines))

    # -- 6 -----------------------------------------------------------------------------

    def imports(self) -> None:
        n = 2 if self.quick else 15
        self.log(f"6. import time x {n}")
        result = child("bench_import.py", "--n", str(n))
        sdk, httpx = result["timeback_client"], result["httpx"]
        lines = [
            "## 6. Import time",
            "",
            f"Fresh interpreters, {n} of each kind interleaved, medians. `-X importtime` = "
            "the cumulative time the interpreter reports for the module itself; *wall* = the "
            f'whole `python -c "import X"` minus `python -c pass` '
            f"({result['python_startup_ms']:.1f} ms). Both from bytecode (the SDK's modules are "
            "compiled first, as pip does on install).",
            "",
            "| module | -X importtime | wall |",
            "|---|---|---|",
            f"| `httpx` alone | {httpx['importtime_ms']:.1f} ms | {httpx['wall_ms']:.1f} ms |",
            f"| `timeback_client` (imports httpx, anyio, attrs) | {sdk['importtime_ms']:.1f} ms "
            f"| {sdk['wall_ms']:.1f} ms |",
        ]
        self.summary.append(
            (
                "6. import time",
                f"{sdk['importtime_ms']:.0f} ms",
                f"{httpx['importtime_ms']:.0f} ms (httpx)",
                "-",
                f"+{sdk['importtime_ms'] - httpx['importtime_ms']:.0f} ms",
            )
        )
        self.sections.append("\n".join(lines))


def _disk_section(runner: Runner) -> None:
    seconds, warmup = ("1.5", "1") if runner.quick else ("30", "10")
    runner.log(f"7. disk: one kiosk activity, {seconds} s")
    runs = {
        mode: child("bench_disk.py", mode, "--seconds", seconds, "--warmup", warmup)
        for mode in ("running", "paused", "bare")
    }
    labels = {
        "running": "SDK, a lesson running (heartbeats every 15 s)",
        "paused": "SDK, the lesson paused",
        "bare": "bare `sqlite3`: one row updated a second, a window in and out per 15 s",
    }
    lines = [
        "## 7. What one kiosk activity writes",
        "",
        "One blocking `Timeback`, the default durable outbox, default options, one activity, "
        "against the emulator in the same process (in memory, over no socket: every byte the "
        f"process writes is the outbox's), over {seconds} s after {warmup} s. Transactions "
        "from `Timeback.statistics()`; bytes and write calls from `/proc/self/io` (`wchar`, "
        "`syscw`, `write_bytes`); `fsync`/`fdatasync` calls counted by `strace` attached "
        "for the stretch. Every commit is synced (`synchronous=FULL`). The bare row is the "
        "floor a per-second checkpoint can reach with SQLite's defaults and the same "
        "durability, run in the same way.",
        "",
        "| client | transactions/s | syncs/s | wchar | write calls / 30 s | write_bytes | goal "
        "| met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in runs.items():
        goal, met = "", ""
        syncs = r.get("syncs_per_s")
        if mode == "running":
            ok = (
                r["transactions_per_s"] <= 1.0
                and r["wchar_per_s"] <= 4000
                and (syncs is None or syncs <= 1.05)  # a second's edge may hold one more
            )
            goal, met = "<= 1 transaction/s, <= 1 sync/s, <= 4 KB/s", _ok(ok)
            runner.summary.append(
                (
                    "7. disk, one kiosk activity running",
                    f"{r['transactions_per_s']:.2f} tx/s, "
                    + ("" if syncs is None else f"{syncs:.2f} syncs/s, ")
                    + f"{r['wchar_per_s'] / 1000:.1f} KB/s",
                    f"{runs['bare']['wchar_per_s'] / 1000:.1f} KB/s (bare sqlite3)",
                    goal,
                    met,
                )
            )
        lines.append(
            f"| {labels[mode]} | {r['transactions_per_s']:.2f} | "
            f"{'-' if syncs is None else f'{syncs:.2f}'} | "
            f"{r['wchar_per_s'] / 1000:.2f} KB/s | {r['syscw_per_30s']:.0f} | "
            f"{r['write_bytes_per_s'] / 1000:.2f} KB/s | {goal} | {met} |"
        )
    runner.sections.append("\n".join(lines))


def _app_calls_section(runner: Runner) -> None:
    seconds, lock = ("3.5", "1.5") if runner.quick else ("20", "12")
    runner.log(f"8. app calls: {seconds} s each way")
    runs = {
        mode: child(
            "bench_app_calls.py",
            mode,
            runner.url,
            runner.origin,
            "--seconds",
            seconds,
            "--lock",
            lock,
        )
        for mode in ("quiet", "locked", "slow-callback")
    }
    labels = {
        "quiet": "nothing in the way (the baseline)",
        "locked": f"another process holds the outbox's write lock for {lock} s",
        "slow-callback": "every `on_flush` blocks the SDK's thread for 400 ms",
    }
    lines = [
        "## 8. App calls never wait",
        "",
        "A blocking `Timeback` (default durable outbox, heartbeats every second) against the "
        f"emulator in its own process. For {seconds} s the app's thread calls `touch()` every "
        "50 ms and, every 2 s, `pause()` and 0.6 s later `resume()`; each call is timed on "
        "the app's thread. *Meant* = active time counted from `time.monotonic()` read on the "
        "app's thread just before each call; *delivered* = the run's `activeMs` at the "
        "emulator.",
        "",
        "| condition | calls | p99 / max `touch` | max `pause` | max `resume` | meant | "
        "delivered - meant | goal | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in runs.items():
        calls = r["touch_calls"] + r["pause_calls"] + r["resume_calls"]
        ok = r["worst_call_ms"] <= 5 and abs(r["error_ms"]) <= 60
        goal = "calls <= 5 ms, delivered within 60 ms"
        lines.append(
            f"| {labels[mode]} | {calls} | {r['touch_p99_ms']:.2f} / {r['touch_max_ms']:.2f} ms | "
            f"{r['pause_max_ms']:.2f} ms | {r['resume_max_ms']:.2f} ms | "
            f"{r['meant_ms']:,.0f} ms | {r['error_ms']:+.1f} ms | {goal} | {_ok(ok)} |"
        )
        runner.summary.append(
            (
                f"8. app calls, {labels[mode]}",
                f"worst {r['worst_call_ms']:.2f} ms, {r['error_ms']:+.1f} ms",
                "-",
                goal,
                _ok(ok),
            )
        )
    runner.sections.append("\n".join(lines))


def _emulator_throughput_section(runner: Runner) -> None:
    concurrency = 8 if runner.quick else 50
    # (warm-up, measured): a short burst, and a sustained load whose windows stay in the
    # vendor's five-minute dedupe cache.
    loads = ((20, 200),) if runner.quick else ((100, 1000), (1000, 10000))
    vendor_python = parity_python()
    kinds = ("vendor", "emulator") if vendor_python else ("emulator",)
    labels = {
        "emulator": "the emulator (`timeback-client emulator`, Python "
        f"{platform.python_version()})",
        "vendor": "the vendor's server SDK (timeback-sdk 0.4.0 behind FastAPI, Python "
        f"{python_version(vendor_python) if vendor_python else ''})",
    }
    lines = [
        "## 9. The emulator's heartbeat throughput, beside the vendor's server",
        "",
        "Each server in a process of its own on 127.0.0.1, fresh for each run; the load "
        f"generator (`bench_emulator.py load`) in another: {concurrency} keep-alive "
        "connections, each a student sending its run's 15 s windows back to back as fast "
        "as the answers come; a warm-up, then the measured heartbeats. Every heartbeat is "
        "a new, valid window (204). The emulator is served as `timeback-client emulator` "
        "serves it (uvicorn, access log on, to a file); the vendor's server is "
        "`tests/emulator/parity/vendor_server.py` in the parity virtualenv (uvicorn, no "
        "access log; Caliper events kept in memory instead of sent). Both on uvicorn's h11 "
        "and asyncio. *Server CPU* is the server process's CPU time (`/proc/PID/stat`) "
        "over the measured stretch, per heartbeat; the generator's own is beside it. The "
        f"servers run alternately; medians of {runner.repeats} runs each, the ratio the "
        "median of the pairs.",
        "",
        "| load | server | heartbeats/s (median) | runs | p50 | p90 | p99 | max | server "
        "CPU per heartbeat | generator CPU per heartbeat | answers | emulator / vendor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts: list[str] = []
    for warmup, count in loads:
        runner.log(f"9. emulator throughput: {warmup} + {count} heartbeats, {concurrency} conns")
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for repeat in range(runner.repeats):
            # Fresh servers each time (both keep every event); the order alternates.
            for kind in kinds if repeat % 2 == 0 else kinds[::-1]:
                with serve(kind) as (url, pid):
                    args: tuple[str, ...] = (url, "--concurrency", str(concurrency))
                    args += ("--count", str(count))
                    args += ("--warmup", str(warmup), "--server-pid", str(pid))
                    runs[kind].append(child("bench_emulator.py", "load", *args))
        load = f"{warmup:,} + {count:,}"
        pairs: list[float] = []
        if vendor_python is not None:
            pairs = [
                e["rps"] / v["rps"] for e, v in zip(runs["emulator"], runs["vendor"], strict=True)
            ]
        for kind in kinds:
            ratio = (
                f"**{median(pairs):.2f}x** ({', '.join(f'{p:.2f}' for p in pairs)})"
                if pairs and kind == "emulator"
                else ""
            )
            lines.append(f"| {load} | {labels[kind]} | {_throughput_cells(runs[kind])} | {ratio} |")
        accepted = all(r["statuses"] == {"204": count} for kind in kinds for r in runs[kind])
        emulator_rps = median([r["rps"] for r in runs["emulator"]])
        if not pairs:
            runner.summary.append(
                (f"9. emulator heartbeats/s, {load}", f"{emulator_rps:,.0f}/s", "-", "-", "-")
            )
            continue
        met = _ok(median(pairs) >= 1.0 and accepted)
        verdicts.append(f"{load}: {median(pairs):.2f}x, {met}")
        runner.summary.append(
            (
                f"9. emulator heartbeats/s, {load} over {concurrency} connections",
                f"{emulator_rps:,.0f}/s",
                f"{median([r['rps'] for r in runs['vendor']]):,.0f}/s (vendor's server SDK)",
                ">= the vendor's, all accepted",
                f"{median(pairs):.2f}x, {met}",
            )
        )
    if vendor_python is None:
        lines += [
            "",
            "The vendor's server SDK is not installed here: make the parity virtualenv "
            "(`.ci/parity-venv.sh DIR`, then `TIMEBACK_PARITY_PYTHON=DIR/bin/python`).",
        ]
    else:
        lines += ["", f"Goal: the emulator's heartbeats/s >= the vendor's: {'; '.join(verdicts)}."]
    runner.sections.append("\n".join(lines))


def _throughput_cells(rs: list[dict[str, Any]]) -> str:
    rates = [r["rps"] for r in rs]
    latencies = [f"{median([r[key] for r in rs]):.1f} ms" for key in _LATENCIES]
    totals: dict[str, int] = {}
    for r in rs:
        for status, n in r["statuses"].items():
            totals[status] = totals.get(status, 0) + n
    return (
        f"{median(rates):,.0f} | {', '.join(f'{rate:,.0f}' for rate in rates)} | "
        f"{' | '.join(latencies)} | "
        f"{median([r['server_cpu_ms_per_request'] for r in rs]):.3f} ms | "
        f"{median([r['client_cpu_ms_per_request'] for r in rs]):.3f} ms | "
        f"{', '.join(f'{n:,} x {status}' for status, n in sorted(totals.items()))}"
    )


_LATENCIES = ("p50_ms", "p90_ms", "p99_ms", "max_ms")


def _worst_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the highest p99 lateness."""
    return max(runs, key=lambda run: float(run["lateness_p99_ms"]))


def _worst_p99(values: Sequence[float]) -> float:
    return max(values)


def _baseline_sources(ref: str, into: Path) -> str | None:
    """``src`` of commit ``ref`` unpacked under ``into`` (read-only git); None if absent."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "src"],
        cwd=HERE.parent,
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return str(into / "src")


def _emulator_queries_section(runner: Runner) -> None:
    sizes, record_calls = ((20, 80), "2") if runner.quick else ((250, 1000), "5")
    ref = runner.emulator_baseline
    runner.log(f"10. emulator record()/runs()/problems() at {sizes} runs, before ({ref}) and after")
    rows: list[str] = []
    agree = True
    with tempfile.TemporaryDirectory() as workdir:
        before_src = _baseline_sources(ref, Path(workdir))
        for runs in sizes:
            db = Path(workdir) / f"history-{runs}.sqlite3"
            built = child("bench_emulator.py", "build", str(db), "--runs", str(runs))
            args = ("history", str(db), "--runs", str(runs), "--record-calls", record_calls)
            after: list[dict[str, Any]] = []
            before: list[dict[str, Any]] = []
            for _ in range(runner.repeats):
                if before_src is not None:
                    before.append(child("bench_emulator.py", *args, pythonpath=before_src))
                after.append(child("bench_emulator.py", *args))
            digests = {r["digest"] for r in before + after}
            agree = agree and len(digests) == 1
            for call, key in _QUERIES:
                rows.append(_query_row(runs, built, call, key, before, after))
    lines = [
        "## 10. The emulator's `record()`, `runs()` and `problems()`, before and after",
        "",
        "A load run's history written once into an emulator's SQLite file "
        "(`bench_emulator.py build`): N runs of 25 windows of 15 s, 4 runs per student over "
        "4 lessons, a resume in every third run, a resent window (a duplicate) in every "
        "seventh, then a completion per run through `record()`, every 25th with time as well "
        "(double counting, found by `problems()`). Each measurement opens a copy of that "
        f"file in a fresh process and times {record_calls} `record()` calls (new attempts "
        "of one student's lesson; median), then one `runs()` and one `problems()`, each "
        "after a `gc.collect()` and with nothing else kept, then both again with the cyclic "
        "garbage collector off (`gc.disable()`): what they cost apart from the full "
        "collections that their own growing heap triggers; last, with the collector on, "
        "`GET /_emulator/runs` through the emulator's in-process transport (no socket), "
        "its answer checked against `runs()`. *Before* is "
        f"the same script run on the sources of commit `{ref}` "
        "(`git archive`), interleaved with *after*, the sources measured here; medians of "
        f"{runner.repeats} runs each. Every run of both returned the same runs, problems "
        f"and attempt numbers (a digest of them): **{'yes' if agree else 'NO'}**.",
        "",
        "| runs | events | call | before | after | before / after |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    big = sizes[-1]
    runner.summary.append(
        (
            f"10. emulator record() / runs() / problems(), {big:,} runs",
            " / ".join(r.split(" | ")[4] for r in rows[-len(_QUERIES) :][:3]),
            " / ".join(r.split(" | ")[3] for r in rows[-len(_QUERIES) :][:3])
            + f" (before, `{ref}`)",
            "same answers",
            "same" if agree else "**differ**",
        )
    )
    runner.sections.append("\n".join(lines))


_SIGNIN_CASES = (
    ("memory", "normal", "`outbox=None`"),
    ("durable", "normal", "durable outbox"),
    ("durable", "slow", "durable outbox, every sync 50 ms (an SD card)"),
)


def _signin_section(runner: Runner) -> None:
    sign_ins = "8" if runner.quick else "40"
    ref = SIGNIN_BASELINE
    runner.log(f"12. sign-in: Timeback(...) + start(), {sign_ins} in a row, before ({ref}), after")
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        before_src = _baseline_sources(ref, Path(workdir))
        for outbox, disk, label in _SIGNIN_CASES:
            args = (runner.url, "--outbox", outbox, "--disk", disk, "--sign-ins", sign_ins)
            before: list[dict[str, Any]] = []
            after: list[dict[str, Any]] = []
            for _ in range(runner.repeats):
                if before_src is not None:
                    before.append(child("bench_signin.py", *args, pythonpath=before_src))
                after.append(child("bench_signin.py", *args))
            cells = [_signin_cells(results) for results in (before, after)]
            p95_after = median([r["p95_ms"] for r in after])
            met = p95_after <= 5.0
            rows.append(f"| {label} | {cells[0]} | {cells[1]} | p95 <= 5 ms | {_ok(met)} |")
            runner.summary.append(
                (
                    f"12. sign-in p95 (`Timeback(...)` + `start()`), {label}",
                    f"{_f(p95_after)} ms",
                    f"{_f(median([r['p95_ms'] for r in before]))} ms (before, `{ref}`)"
                    if before
                    else "n/a",
                    "p95 <= 5 ms",
                    _ok(met),
                )
            )
    lines = [
        "## 12. Sign-in: a client made and a lesson started on the app's thread",
        "",
        "A kiosk makes a blocking `Timeback` for each student who signs in, on its GUI "
        "thread, and starts the student's lesson: `bench_signin.py` times those two calls "
        f"for {sign_ins} students one after another in one process (each signs out, "
        "untimed, before the next signs in; every client of the durable runs shares one "
        "outbox file, as a kiosk's share the default one). The slow disk makes every sync "
        "of the outbox's files take 50 ms, as an SD card's may, through the test suite's "
        "slow-disk VFS. *Before* is the same script on the sources of commit "
        f"`{ref}` (`git archive`), interleaved with *after*, the sources measured here; "
        f"each cell is the median over {runner.repeats} runs of each run's median, p95 and "
        "max, and the syncs that finished during a sign-in.",
        "",
        "| outbox | before: median / p95 / max (syncs) | after: median / p95 / max (syncs) "
        "| goal | met |",
        "|---|---|---|---|---|",
        *rows,
    ]
    runner.sections.append("\n".join(lines))


def _signin_cells(results: list[dict[str, Any]]) -> str:
    if not results:
        return "n/a"

    def med(key: str) -> float:
        return median([r[key] for r in results])

    return (
        f"{_f(med('median_ms'))} / {_f(med('p95_ms'))} / {_f(med('max_ms'))} ms "
        f"({_f(med('syncs_per_sign_in'), 0)})"
    )


def _pygame_section(runner: Runner) -> None:
    frames = "300" if runner.quick else "3000"
    runner.log(f"13. pygame: a game loop's frames, {frames} bare and {frames} tracked")
    runs = runner.repeat("bench_pygame.py", runner.url, "--frames", frames)

    def med(key: str) -> float:
        return median([r[key] for r in runs])

    extra_ns, share = med("extra_ns_per_event"), med("extra_share_of_60fps_frame")
    met = share <= 0.01 and all(r["still_tracking"] for r in runs)
    flavour = "pygame-ce" if runs[0]["pygame_ce"] else "pygame"
    per_frame = runs[0]["events_per_frame"]
    runner.summary.append(
        (
            f"13. pygame `process_event`, {per_frame} events a frame",
            f"{_f(med('tracked_ns_per_event'), 0)} ns/event",
            f"{_f(med('bare_ns_per_event'), 0)} ns/event (the loop without tracking)",
            "extra <= 1% of a 60 fps frame",
            f"+{_f(extra_ns, 0)} ns/event, {_f(share * 100, 3)}%, {_ok(met)}",
        )
    )
    lines = [
        "## 13. A pygame game's loop, tracked",
        "",
        f"`bench_pygame.py` ({flavour} {runs[0]['pygame']}, SDL's dummy video driver, a "
        "blocking client on the emulator, one running activity): each frame posts "
        f"{per_frame} events into pygame's queue (80% pointer motion, 10% key presses, 10% "
        "events the tracker ignores), takes them out with `pygame.event.get()` and hands each "
        "to the game's handler; a *tracked* frame also hands each to "
        f"`tracker.process_event`. {frames} frames of each kind, alternating in blocks of "
        f"50; each cell is the median over {runner.repeats} runs of the median frame.",
        "",
        "| loop | frame | per event | extra per event | extra share of a 60 fps frame | met |",
        "|---|---|---|---|---|---|",
        f"| without tracking (baseline) | {_f(med('bare_frame_ms'), 3)} ms | "
        f"{_f(med('bare_ns_per_event'), 0)} ns | - | - | - |",
        f"| `tracker.process_event` on every event | {_f(med('tracked_frame_ms'), 3)} ms | "
        f"{_f(med('tracked_ns_per_event'), 0)} ns | +{_f(extra_ns, 0)} ns | "
        f"{_f(share * 100, 3)}% (goal <= 1%) | {_ok(met)} |",
    ]
    runner.sections.append("\n".join(lines))


_LOCUST_MODES = ("simulate", "before", "locust")


def _locust_section(runner: Runner) -> None:
    students, interval, seconds = (20, 1.0, 4.0) if runner.quick else (1000, 15.0, 75.0)
    repeats = runner.repeats if runner.quick else max(3, runner.repeats)
    runner.log(f"11. Locust: {students} students at {interval:g} s for {seconds:g} s, each way")
    args: tuple[str, ...] = (runner.url, "--students", str(students))
    args += ("--interval", str(interval))
    args += ("--seconds", str(seconds))
    floor: tuple[str, ...] = (runner.url, "--activities", str(students))
    floor += ("--interval", str(interval), "--seconds", str(seconds))
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in ("floor", *_LOCUST_MODES)}
    with tempfile.TemporaryDirectory() as workdir:
        before_src = _baseline_sources(LOCUST_BASELINE, Path(workdir))
        for _ in range(repeats):  # interleaved: drift hits all alike
            bare = child("bench_cpu.py", "bare", *floor)
            runs["floor"].append(bare | {"cpu_per_heartbeat_ms": bare["cpu_ms_per_heartbeat"]})
            runs["simulate"].append(child("bench_locust.py", "simulate", *args))
            if before_src is not None:
                runs["before"].append(
                    child("bench_locust.py", "locust", *args, pythonpath=before_src)
                )
            runs["locust"].append(child("bench_locust.py", "locust", *args))
    ratios = {
        mode: [
            loc["cpu_per_heartbeat_ms"] / sim["cpu_per_heartbeat_ms"]
            for loc, sim in zip(runs[mode], runs["simulate"], strict=True)
        ]
        for mode in ("before", "locust")
        if runs[mode]
    }
    per = {mode: median([r["cpu_per_heartbeat_ms"] for r in rs]) for mode, rs in runs.items() if rs}
    # The floor posts bodies of no run: only the drivers' runs are checked.
    checked = {
        mode: all(r["exact"] and not r["failed"] for r in runs[mode])
        for mode in _LOCUST_MODES
        if runs[mode]
    }
    lines = [
        "## 11. Students per Locust worker core",
        "",
        f"{students} students of the built-in lessons, one heartbeat every {interval:g} s in "
        f"real time, arriving over one interval, for {seconds:g} s, against the emulator in "
        "its own process. *Locust*: a master and one worker running "
        "`examples/load_test/locustfile.py`; the worker process's CPU from the start of the "
        "test to its last window (`cpuSeconds` of `--timeback-report`: the students' "
        "greenlets, the SDK's thread and Locust's own statistics) divided by the heartbeats "
        "it sent. *simulate*: `timeback-client simulate`'s engine in one process at `--speed "
        f"1`, its client CPU divided by its requests. *Before*: the worker of commit "
        f"`{LOCUST_BASELINE}` (`git archive`), which parsed Locust's own options "
        "again for every option of every spawn message, and whose students each asked "
        "whether the backend is the emulator until one answer came. *Floor*: what this "
        "machine's CPU allows any client built on httpx: `bench_cpu.py bare`, a task per "
        "student that builds its window's body on schedule and 8 sender tasks that post it "
        "through one `httpx.AsyncClient` (no SDK, no Locust, no student behaviour), its "
        "process CPU over the steady stretch after one interval of warm-up divided by the "
        "windows accepted. The four run "
        f"interleaved, {repeats} rounds; a worker's ratio is its CPU per heartbeat over "
        "simulate's in the same round. Students per core = interval / CPU per heartbeat: a "
        "core fully busy (Locust warns from 90%). This machine is shared and noisy: the "
        "ratio, taken within a round, moves less than the milliseconds.",
        "",
        "| driver | CPU per heartbeat (median) | runs | students per core at "
        f"{interval:g} s | / simulate (median of rounds) | / simulate (worst round) | "
        "every run exact, no failure |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = (
        ("floor", "floor: a bare `httpx.AsyncClient.post` loop"),
        ("simulate", "`timeback-client simulate`"),
        ("before", f"Locust worker before (`{LOCUST_BASELINE}`)"),
        ("locust", "Locust worker"),
    )
    for mode, label in labels:
        if not runs[mode]:
            continue
        ratio = (
            (f"{median(ratios[mode]):.2f}", f"{max(ratios[mode]):.2f}")
            if mode in ratios
            else ("-", "-")
        )
        lines.append(
            f"| {label} | {per[mode]:.2f} ms | {len(runs[mode])} | "
            f"{interval * 1000 / per[mode]:,.0f} | {ratio[0]} | {ratio[1]} | "
            f"{_exact_cell(checked.get(mode))} |"
        )
    each = ", ".join(
        f"{loc['cpu_per_heartbeat_ms']:.2f}/{sim['cpu_per_heartbeat_ms']:.2f}"
        for loc, sim in zip(runs["locust"], runs["simulate"], strict=True)
    )
    floors = ", ".join(f"{r['cpu_per_heartbeat_ms']:.2f}" for r in runs["floor"])
    lines += [
        "",
        f"Each round, worker/simulate ms per heartbeat: {each}; the floor's: {floors}.",
    ]
    ratio_median = median(ratios["locust"])
    per_core = interval * 1000 / per["locust"]
    budget_ms = 15_000 / LOCUST_STUDENTS_PER_CORE  # the CPU per heartbeat the goal allows
    runner.summary.append(
        (
            f"11. Locust worker CPU per heartbeat / simulate's, at {interval:g} s",
            f"{ratio_median:.2f} (worst round {max(ratios['locust']):.2f}; "
            f"{per_core:,.0f} students per core)",
            f"simulate {per['simulate']:.2f} ms"
            + (f", before {median(ratios['before']):.2f}" if "before" in ratios else "")
            + f"; floor {interval * 1000 / per['floor']:,.0f} students per core",
            f"<= 1.2x, >= {LOCUST_STUDENTS_PER_CORE:,} per core at 15 s (<= {budget_ms:.1f} ms "
            "per heartbeat), every run exact",
            f"1.2x {_ok(all(checked.values()) and ratio_median <= 1.2)}; "
            f"{LOCUST_STUDENTS_PER_CORE:,} per core {_ok(per['locust'] <= budget_ms)}",
        )
    )
    runner.sections.append("\n".join(lines))


def _exact_cell(checked: bool | None) -> str:
    return "- (no runs to check)" if checked is None else "yes" if checked else "no"


_QUERIES = (
    ("`record()`", "record_s"),
    ("`runs()`", "runs_s"),
    ("`problems()`", "problems_s"),
    ("`runs()`, cyclic GC off", "runs_nogc_s"),
    ("`problems()`, cyclic GC off", "problems_nogc_s"),
    ("`GET /_emulator/runs` (in process)", "http_runs_s"),
)


def _query_row(
    runs: int,
    built: dict[str, Any],
    call: str,
    key: str,
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
) -> str:
    def seconds(results: list[dict[str, Any]]) -> float:
        values = [median(r[key]) if isinstance(r[key], list) else r[key] for r in results]
        return median(values)

    after_s = seconds(after)
    if not before:
        return (
            f"| {runs:,} | {built['events']:,} | {call} | baseline commit not in this "
            f"checkout | {_duration(after_s)} | |"
        )
    before_s = seconds(before)
    return (
        f"| {runs:,} | {built['events']:,} | {call} | {_duration(before_s)} | "
        f"{_duration(after_s)} | {before_s / after_s:,.1f}x |"
    )


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _writer_share(threads: dict[str, float]) -> float:
    """The outbox writer thread's share of a run's CPU."""
    total = sum(threads.values())
    writer = sum(v for name, v in threads.items() if "outbox writer" in name)
    return writer / total if total else 0.0


def _revision() -> str:
    """The commit measured, and whether the SDK's sources differ from it (read-only git)."""
    root = HERE.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src")
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}"


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def render(runner: Runner, command: str, started: float, load_before: str, revision: str) -> str:
    info = machine()
    minutes = (time.monotonic() - started) / 60
    summary = [
        "| figure | SDK | baseline | goal | result |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in runner.summary),
    ]
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"- Command: `{command}` ({minutes:.1f} min, "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC), at commit {revision}",
            f"- Machine: {info['cpu']}, {info['cores']} cores; {info['os']}; load average "
            f"before {load_before}, after {_load()} (other work on the machine skews the figures)",
            f"- Software: {info['implementation']} {info['python']}, httpx {info['httpx']}, "
            f"anyio {info['anyio']}, uvicorn {info['uvicorn']} (the emulator's server)",
            "- Server: the backend emulator in its own process on 127.0.0.1 (`timeback_client."
            "tools._emulator_process`), shared by each figure and its baseline; only the "
            "client process is measured.",
            "",
            *summary,
            "",
            *("\n\n".join(runner.sections).splitlines()),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    parser.add_argument("--repeats", type=int, help="runs per figure (default 3, quick 1)")
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write (default benchmarks/RESULTS.md; with --quick, nowhere unless given)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated: cpu,memory,punctuality,punctuality-tools,accuracy,end,imports,"
        "disk,app-calls,"
        "emulator-throughput,emulator-queries,locust,sign-in,pygame",
    )
    parser.add_argument(
        "--emulator-baseline",
        default=EMULATOR_BASELINE,
        metavar="REF",
        help=f"the commit whose emulator is 'before' in figure 10 (default {EMULATOR_BASELINE})",
    )
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    out = args.out if args.out or args.quick else HERE / "RESULTS.md"
    steps: dict[str, Callable[[Runner], None]] = {
        "cpu": Runner.cpu,
        "memory": Runner.memory,
        "punctuality": Runner.punctuality,
        "punctuality-tools": lambda runner: runner.punctuality(tools_only=True),
        "accuracy": Runner.accuracy,
        "end": Runner.end,
        "imports": Runner.imports,
        "disk": _disk_section,
        "app-calls": _app_calls_section,
        "emulator-throughput": _emulator_throughput_section,
        "emulator-queries": _emulator_queries_section,
        "locust": _locust_section,
        "sign-in": _signin_section,
        "pygame": _pygame_section,
    }
    chosen = args.only.split(",") if args.only else list(steps)
    started, load_before, revision = time.monotonic(), _load(), _revision()
    with EmulatorProcess({TOKEN: EMAIL}) as emulator:
        runner = Runner(args.quick, repeats, emulator)
        runner.emulator_baseline = args.emulator_baseline
        for name in chosen:
            steps[name](runner)
    command = " ".join(["python benchmarks/run.py", *map(shlex.quote, sys.argv[1:])])
    text = render(runner, command, started, load_before, revision)
    if out is not None:
        kept = ""
        if out.exists() and ANALYSIS_MARKER in (existing := out.read_text()):
            kept = existing.split(ANALYSIS_MARKER, 1)[1]
        out.write_text(f"{text}\n{ANALYSIS_MARKER}{kept or chr(10)}")
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
