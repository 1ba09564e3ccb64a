"""6. Import time of ``timeback_client`` vs ``httpx`` alone, in fresh interpreters.

Each sample is a new ``python -X importtime -c "import X"``; the figure is the cumulative
microseconds ``-X importtime`` reports for ``X`` itself (interpreter start-up excluded),
and, as a cross-check, the wall time of the whole process minus that of ``python -c pass``.
Both packages are imported from bytecode, as an installed wheel is: the SDK's modules are
compiled first (an editable checkout, or ``PYTHONDONTWRITEBYTECODE``, would otherwise
compile them from source on every sample, and httpx not).

    python benchmarks/bench_import.py [--n N]
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

from _bench import emit, median


def _sample(module: str | None) -> tuple[float, float]:
    """(wall ms of the whole process, cumulative import ms of ``module``)."""
    code = "pass" if module is None else f"import {module}"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    wall_ms = (time.perf_counter() - started) * 1000
    cumulative_us = 0
    for line in done.stderr.splitlines():
        # "import time: self [us] | cumulative | imported package"
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            cumulative_us = int(parts[1])
    return wall_ms, cumulative_us / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=15)
    args = parser.parse_args()
    spec = importlib.util.find_spec("timeback_client")
    assert spec is not None
    assert spec.origin is not None
    compileall.compile_dir(Path(spec.origin).parent, quiet=1)
    results: dict[str, dict[str, float]] = {}
    samples: dict[str | None, list[tuple[float, float]]] = {
        None: [],
        "httpx": [],
        "timeback_client": [],
    }
    for _ in range(args.n):  # interleaved, so drift hits every kind alike
        for module in samples:
            samples[module].append(_sample(module))
    baseline = median([wall for wall, _ in samples[None]])
    for module in ("httpx", "timeback_client"):
        results[module] = {
            "importtime_ms": median([cumulative for _, cumulative in samples[module]]),
            "wall_ms": median([wall for wall, _ in samples[module]]) - baseline,
        }
    emit({"n": args.n, "python_startup_ms": baseline, **results})


if __name__ == "__main__":
    main()
