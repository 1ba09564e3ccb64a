"""The Jupyter lessons, executed top to bottom by nbclient in a real ipykernel.

The kernel's asyncio loop is running throughout, as in Jupyter: the sync notebook's
client runs in its own thread, the async one's in the kernel's loop.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (dev group)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (dev group)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (dev group)")
pytest.importorskip("starlette", reason="the notebooks' emulator needs the 'emulator' extra")
pytest.importorskip("anywidget", reason="the notebooks' badge needs the 'jupyter' extra")

from .conftest import ROOT  # noqa: E402

LESSONS = ROOT / "examples" / "jupyter_lesson"
WIDGET = "application/vnd.jupyter.widget-view+json"


def execute(notebook: str, workdir: Path) -> list[str]:
    """Run a copy of the notebook in ``workdir``; return each code cell's output text."""
    shutil.copy(LESSONS / notebook, workdir / notebook)
    book: Any = nbformat.read(workdir / notebook, as_version=4)
    client = nbclient.NotebookClient(
        book, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return [_text(cell) for cell in book.cells if cell.cell_type == "code"]


def _text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            data = output.data
            if WIDGET in data:  # the badge: its model's id is all a kernel-only run shows
                parts.append(f"[widget {data[WIDGET]['model_id']}]")
            else:
                parts.append(data.get("text/markdown") or data.get("text/plain", ""))
    return "".join(parts)


def test_the_sync_lesson_resumes_a_saved_run_and_completes_it(tmp_path: Path) -> None:
    saved = str(uuid.uuid4())
    (tmp_path / "progress.json").write_text(json.dumps({"run_id": saved}))

    outputs = execute("lesson.ipynb", tmp_path)

    assert f"Resumed run {saved}" in outputs[0]
    _check_lesson(outputs, saved, tmp_path)


def test_the_async_lesson_runs_in_the_kernels_own_loop(tmp_path: Path) -> None:
    outputs = execute("lesson_async.ipynb", tmp_path)

    started = re.search(r"Started run ([0-9a-f-]{36})", outputs[0])
    assert started, outputs[0]
    _check_lesson(outputs, started.group(1), tmp_path)


def _check_lesson(outputs: list[str], run_id: str, workdir: Path) -> None:
    assert [out.strip() for out in outputs[1:4]] == [
        "add: right!",
        "simplify: right!",
        "bigger: right!",
    ]
    assert len(re.findall(r"\[widget \w+\]", outputs[0])) == 1, outputs[0]  # one badge
    final = outputs[4]
    counted = re.search(rf"run {run_id}: (\d+) ms active", final)
    assert counted, final
    assert int(counted.group(1)) > 0
    assert "Lesson complete" in final
    assert "problems the emulator found: none" in final
    assert not (workdir / "progress.json").exists()  # the next attempt gets a fresh run
