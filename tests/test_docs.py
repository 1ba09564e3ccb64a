"""The documentation site keeps up with the code, without building it (no mkdocs needed).

Every public name is in the API reference, as a mkdocstrings ``::: module.name``
directive, so adding a public name without documenting it fails here; no directive names a
public module's member that is no longer public; the testing guide's examples pass as
written; and every test the networks guide cites exists.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import timeback_client
import timeback_client.emulator
import timeback_client.testing
import timeback_client.tools.students

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src"
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)


def _static_all(module_file: Path) -> list[str]:
    """A module's ``__all__``, read from its source: the Tk and Qt modules import their
    toolkit, which a machine building the docs need not have."""
    for node in ast.parse(module_file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                assert node.value is not None
                names = ast.literal_eval(node.value)
                assert isinstance(names, list)
                return [str(name) for name in names]
    raise AssertionError(f"{module_file} has no __all__")


PUBLIC_MODULES: dict[str, list[str]] = {
    "timeback_client": list(timeback_client.__all__),
    "timeback_client.emulator": list(timeback_client.emulator.__all__),
    "timeback_client.testing": list(timeback_client.testing.__all__),
    "timeback_client.tools.students": list(timeback_client.tools.students.__all__),
    "timeback_client.integrations.tk": _static_all(
        SRC / "timeback_client" / "integrations" / "tk.py"
    ),
    "timeback_client.integrations.qt": _static_all(
        SRC / "timeback_client" / "integrations" / "qt.py"
    ),
    "timeback_client.integrations.jupyter": _static_all(
        SRC / "timeback_client" / "integrations" / "jupyter.py"
    ),
    # Read from its source: importing it imports Locust, which monkey-patches the process.
    "timeback_client.locust": _static_all(SRC / "timeback_client" / "locust" / "__init__.py"),
}
PUBLIC_NAMES = [f"{module}.{name}" for module, names in PUBLIC_MODULES.items() for name in names]


def _is_module(dotted: str) -> bool:
    path = SRC.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def _directives() -> dict[str, Path]:
    """Each object the reference pages render, and the page that renders it."""
    found: dict[str, Path] = {}
    for page in sorted((DOCS / "reference").glob("*.md")):
        for target in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            found.setdefault(target, page)
    return found


def test_the_public_modules_have_names_to_check() -> None:
    for module, names in PUBLIC_MODULES.items():
        assert names, module
    assert "track" in PUBLIC_MODULES["timeback_client.integrations.tk"]
    assert "track" in PUBLIC_MODULES["timeback_client.integrations.qt"]
    assert "track" in PUBLIC_MODULES["timeback_client.integrations.jupyter"]


@pytest.mark.parametrize("qualified", PUBLIC_NAMES)
def test_every_public_name_is_in_the_api_reference(qualified: str) -> None:
    """A public name nobody documented fails here: add ``::: {qualified}`` to a page
    under docs/reference/."""
    assert qualified in _directives(), (
        f"{qualified} is public but not in the API reference: add `::: {qualified}` to a "
        "page in docs/reference/"
    )


def test_the_reference_names_nothing_that_is_no_longer_public() -> None:
    """A directive for a public module's member must name one of its public names (the
    pages may also render a module's own docstring, or a private class that a public
    attribute is an instance of, such as ``timeback.activity``)."""
    stale = [
        f"{target} ({page.name})"
        for target, page in _directives().items()
        if target.rpartition(".")[0] in PUBLIC_MODULES
        and target not in PUBLIC_NAMES
        and not _is_module(target)
        and not target.rpartition(".")[2].startswith("_")
    ]
    assert stale == []


def test_each_name_is_documented_once() -> None:
    counts: dict[str, int] = {}
    for page in (DOCS / "reference").glob("*.md"):
        for target in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            counts[target] = counts.get(target, 0) + 1
    assert {target: n for target, n in counts.items() if n > 1} == {}


def test_every_page_is_in_the_navigation() -> None:
    """mkdocs builds pages left out of ``nav`` too, but no reader finds them."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert pages
    assert [page for page in pages if f": {page}" not in config] == []


def test_the_networks_guide_cites_tests_that_exist() -> None:
    """Each recipe says which test runs it: those tests must be there."""
    guide = (DOCS / "guides" / "networks.md").read_text(encoding="utf-8")
    cited = set(re.findall(r"`(test_\w+)`", guide))
    tests = ast.parse((ROOT / "tests" / "test_networks.py").read_text(encoding="utf-8"))
    defined = {
        node.name for node in tests.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert len(cited) >= 10
    assert cited - defined == set()


def test_the_testing_guide_s_scripts_run_as_written(tmp_path: Path) -> None:
    """Its Python blocks that are no test are whole scripts: each runs as it is, warnings
    as errors (top-level ``await`` or ``async with`` would be a SyntaxError)."""
    pytest.importorskip("starlette", reason="the emulator needs the emulator extra")
    guide = (DOCS / "guides" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", guide, re.DOTALL)
    scripts = [block for block in blocks if "def test_" not in block]
    assert scripts
    for script in scripts:
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, script + done.stderr[-3000:]


def test_the_testing_guide_s_examples_pass(tmp_path: Path) -> None:
    """The guide's example tests, run as an app's suite runs them: with the plugin that
    installing the package registers, and warnings as errors."""
    pytest.importorskip("starlette", reason="the plugin's emulator needs the emulator extra")
    guide = (DOCS / "guides" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", guide, re.DOTALL)
    examples = [block for block in blocks if "def test_" in block]
    assert len(examples) >= 3
    module = "import pytest\n\n\n" + "\n\n".join(textwrap.dedent(b) for b in examples)
    (tmp_path / "test_guide_examples.py").write_text(module, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    # Async examples run once per event loop anyio finds: at least one run per example.
    passed = re.fullmatch(r"(\d+) passed in [\d.]+s", summary)
    assert passed, summary
    assert int(passed.group(1)) >= len(re.findall(r"^def test_|^async def test_", module, re.M))
