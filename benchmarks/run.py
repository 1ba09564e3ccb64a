"""Run every benchmark, each beside its baseline, and write ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/run.py            # the full run (about 20 minutes)
    .venv/bin/python benchmarks/run.py --quick    # a smoke run at tiny sizes (< 30 s)

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
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _bench import EMAIL, HERE, TOKEN, child, machine, median

from timeback_client.tools._emulator_process import EmulatorProcess

CPU_LABELS = {
    "bare": "bare `httpx.AsyncClient.post` loop (the floor)",
    "sdk": "SDK, `outbox=None`",
    "sdk-outbox": "SDK, default durable outbox",
}
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

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def repeat(self, script: str, *args: str) -> list[dict[str, Any]]:
        return [child(script, *args) for _ in range(self.repeats)]

    # -- 1 -----------------------------------------------------------------------------

    def cpu(self) -> None:
        k, interval, seconds = (20, 0.2, 0.6) if self.quick else (200, 1.0, 12.0)
        self.log(
            f"1. CPU per heartbeat: {k} activities at {interval} s, {seconds} s x {self.repeats}"
        )
        modes = ("bare", "sdk", "sdk-outbox")
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for _ in range(self.repeats):
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
        per = {mode: median([r["cpu_ms_per_heartbeat"] for r in runs[mode]]) for mode in modes}
        rate = median([r["rate"] for r in runs["bare"]])
        lines = [
            "## 1. CPU per delivered heartbeat",
            "",
            f"{k} activities, one window each per {interval:g} s (about {rate:.0f} "
            f"heartbeats/s), starts staggered over one interval, through one "
            f"`httpx.AsyncClient`, to the emulator in its own process. Client-process CPU "
            f"(`time.process_time`) over {seconds:g} s after one interval of warm-up, divided "
            f"by the windows the server accepted meanwhile. Median of {self.repeats} run(s), "
            "modes interleaved.",
            "",
            "| client | CPU per heartbeat (median) | runs | vs bare | goal <= 1.25 |",
            "|---|---|---|---|---|",
        ]
        labels = CPU_LABELS
        for mode in modes:
            ratio = per[mode] / per["bare"]
            values = ", ".join(_f(r["cpu_ms_per_heartbeat"], 3) for r in runs[mode])
            verdict = "" if mode == "bare" else _ok(ratio <= 1.25)
            lines.append(
                f"| {labels[mode]} | {_f(per[mode], 3)} ms | {values} | {ratio:.2f}x | {verdict} |"
            )
            if mode != "bare":
                self.summary.append(
                    (
                        f"1. CPU/heartbeat, {labels[mode]}",
                        f"{_f(per[mode], 3)} ms",
                        f"{_f(per['bare'], 3)} ms (bare)",
                        "ratio <= 1.25",
                        f"{ratio:.2f}x, {_ok(ratio <= 1.25)}",
                    )
                )
        if not self.quick:
            lines += self._cpu_at_default_interval()
        self.sections.append("\n".join(lines))

    def _cpu_at_default_interval(self) -> list[str]:
        k, interval, seconds = 3000, 15.0, 20.0
        self.log(f"1. CPU per heartbeat at the default interval: {k} activities at {interval} s")
        runs = {
            mode: child(
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
            for mode in ("bare", "sdk", "sdk-outbox")
        }
        bare = runs["bare"]["cpu_ms_per_heartbeat"]
        return [
            "",
            f"The same at the default 15 s interval, one run each: {k:,} activities (about "
            f"{runs['bare']['rate']:.0f} heartbeats/s), {seconds:g} s measured. The outbox "
            "checkpoints each running activity's open window once a second, so at 15 s "
            "there are 15 checkpoints per heartbeat:",
            "",
            "| client | CPU per heartbeat | vs bare |",
            "|---|---|---|",
            *(
                f"| {CPU_LABELS[mode]} | {_f(r['cpu_ms_per_heartbeat'], 3)} ms | "
                f"{r['cpu_ms_per_heartbeat'] / bare:.2f}x |"
                for mode, r in runs.items()
            ),
        ]

    # -- 2 -----------------------------------------------------------------------------

    def memory(self) -> None:
        sizes = (200,) if self.quick else (1000, 10000)
        self.log(f"2. memory per activity at {sizes} x {self.repeats}")
        lines = [
            "## 2. Memory per running activity",
            "",
            "N students started in a fresh process, before their first heartbeat is due. Each "
            "SDK student is a task holding its own `AsyncTimeback` (all on one "
            "`httpx.AsyncClient`) with one running activity; a *holder* (a task waiting on an "
            "event) is what holding a client open costs the benchmark, and is subtracted. "
            "**Net SDK cost = SDK student - holder** (client, task group, activity, ledger, "
            "heartbeat task); **extra = net - bare sleeping anyio task**. Python heap growth "
            "by `tracemalloc` (primary) and RSS growth (`/proc/self/statm`, secondary) over N, "
            f"median of {self.repeats} runs each.",
            "",
            "| N | method | bare task | holder | SDK student | net SDK | extra vs bare task "
            "| goal <= 4 KiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n in sizes:
            for method in ("tracemalloc",) if self.quick else ("tracemalloc", "rss"):
                flag = ("--rss",) if method == "rss" else ()
                per: dict[str, float] = {}
                for kind in ("task", "holder", "sdk"):
                    per[kind] = median(
                        [
                            r["bytes_per_item"]
                            for r in self.repeat("bench_memory.py", kind, str(n), *flag)
                        ]
                    )
                net = per["sdk"] - per["holder"]
                extra = net - per["task"]
                lines.append(
                    f"| {n:,} | {method} | {per['task'] / KIB:.2f} KiB | "
                    f"{per['holder'] / KIB:.2f} KiB | {per['sdk'] / KIB:.2f} KiB | "
                    f"{net / KIB:.2f} KiB | {extra / KIB:+.2f} KiB | {_ok(extra <= 4 * KIB)} |"
                )
                if method == "tracemalloc":
                    self.summary.append(
                        (
                            f"2. memory per activity, {n:,} activities",
                            f"{net / KIB:.2f} KiB",
                            f"{per['task'] / KIB:.2f} KiB (bare task)",
                            "<= 4 KiB more",
                            f"{extra / KIB:+.2f} KiB, {_ok(extra <= 4 * KIB)}",
                        )
                    )
        n_outbox = 50 if self.quick else 1000
        outbox = {
            m: child(
                "bench_memory.py", "sdk-outbox", str(n_outbox), *(("--rss",) if m == "rss" else ())
            )["bytes_per_item"]
            for m in ("tracemalloc", "rss")
        }
        lines += [
            "",
            f"With the default durable outbox ({n_outbox:,} clients, one run): "
            f"{outbox['tracemalloc'] / KIB:.1f} KiB of Python heap and "
            f"{outbox['rss'] / KIB:.0f} KiB of RSS per student (each client holds a SQLite "
            "connection with its own page cache, which `tracemalloc` does not see).",
        ]
        self.sections.append("\n".join(lines))

    # -- 3 -----------------------------------------------------------------------------

    def punctuality(self) -> None:
        configs: Sequence[tuple[int, float, float, float]] = (
            ((30, 0.3, 1.5, 50.0), (60, 1.0, 1.5, 100.0))
            if self.quick
            else ((1000, 1.0, 60.0, 50.0), (10000, 15.0, 60.0, 100.0))
        )
        lines = [
            "## 3. Heartbeat punctuality and scale",
            "",
            "N activities (one `AsyncTimeback` each, one shared `httpx.AsyncClient`, "
            "`outbox=None`), starts staggered evenly over one interval, each running for the "
            "stated time against the emulator in its own process; then every run is read back "
            "from the emulator. **Lateness** of a heartbeat = its window's `endedAt` minus the "
            "instant it was due on the SDK's own schedule (`startedAt` of the run + k x "
            "interval); **missed** = beats that never came. *Delivery* = the server's "
            "`receivedAt` minus `endedAt` (no goal; shows whether sending keeps up). Medians "
            f"of {self.repeats} runs.",
            "",
            "| activities | interval | heartbeats | lateness p50 | lateness p99 | max | missed "
            "| delivery p50 / p99 | client CPU | goal | met |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n, interval, seconds, goal in configs:
            self.log(
                f"3. punctuality: {n} activities at {interval} s for {seconds} s x {self.repeats}"
            )
            args = (
                self.url,
                self.origin,
                "--activities",
                str(n),
                "--interval",
                str(interval),
                "--seconds",
                str(seconds),
            )
            runs = self.repeat("bench_punctuality.py", *args)
            lines.append(self._punctuality_row(runs, n, interval, goal))
            p99 = median([r["lateness_p99_ms"] for r in runs])
            missed = median([r["missed"] for r in runs])
            met = p99 <= goal and missed == 0
            self.summary.append(
                (
                    f"3. p99 lateness, {n:,} activities at {interval:g} s",
                    f"{_f(p99, 0)} ms, {missed:.0f} missed",
                    "-",
                    f"<= {goal:.0f} ms, 0 missed",
                    _ok(met),
                )
            )
        if self.quick:
            self.sections.append("\n".join(lines))
            return
        n, interval, seconds, goal = configs[-1]
        self.log(f"3. punctuality with gc.freeze() (diagnosis): {n} at {interval} s")
        frozen = child(
            "bench_punctuality.py",
            self.url,
            self.origin,
            "--activities",
            str(n),
            "--interval",
            str(interval),
            "--seconds",
            str(seconds),
            "--freeze",
        )
        lines += [
            "",
            "Diagnosis, one run: the same with `gc.freeze()` once every activity has started "
            "(an application's choice, not the SDK's), so full garbage collections no longer "
            "walk the activities:",
            "",
            "| activities | interval | heartbeats | lateness p50 | lateness p99 | max | missed "
            "| delivery p50 / p99 | client CPU | goal | met |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            self._punctuality_row([frozen], n, interval, goal),
        ]
        self.sections.append("\n".join(lines))

    @staticmethod
    def _punctuality_row(runs: list[dict[str, Any]], n: int, interval: float, goal: float) -> str:
        def med(key: str) -> float:
            return median([r[key] for r in runs])

        met = med("lateness_p99_ms") <= goal and med("missed") == 0
        return (
            f"| {n:,} | {interval:g} s | {med('heartbeats'):,.0f} | "
            f"{_f(med('lateness_p50_ms'), 0)} ms | {_f(med('lateness_p99_ms'), 0)} ms | "
            f"{_f(med('lateness_max_ms'), 0)} ms | {med('missed'):.0f} | "
            f"{_f(med('delivery_p50_ms'), 0)} / {_f(med('delivery_p99_ms'), 0)} ms | "
            f"{med('client_cpu_share'):.0%} | p99 <= {goal:.0f} ms, 0 missed | {_ok(met)} |"
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
            f"({result['python_startup_ms']:.1f} ms).",
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
            "_emulator_process`), shared by each figure and its baseline; only the client "
            "process is measured.",
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
        "--only", help="comma-separated: cpu,memory,punctuality,accuracy,end,imports"
    )
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    out = args.out if args.out or args.quick else HERE / "RESULTS.md"
    steps: dict[str, Callable[[Runner], None]] = {
        "cpu": Runner.cpu,
        "memory": Runner.memory,
        "punctuality": Runner.punctuality,
        "accuracy": Runner.accuracy,
        "end": Runner.end,
        "imports": Runner.imports,
    }
    chosen = args.only.split(",") if args.only else list(steps)
    started, load_before, revision = time.monotonic(), _load(), _revision()
    with EmulatorProcess({TOKEN: EMAIL}) as emulator:
        runner = Runner(args.quick, repeats, emulator)
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
