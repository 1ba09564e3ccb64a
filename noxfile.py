"""The test matrix, the oldest allowed dependencies, the linters and the package.

    nox -s tests-3.12 -- -k ledger     # one Python; arguments after -- go to pytest
    nox -s lowest lint build           # the other checks

``bash scripts/test.sh`` installs nox and runs every session at once (the test suites
are tagged ``suite``); CI runs exactly that. Each session makes its own virtualenv
under ``.nox/`` with uv.

An interpreter the machine lacks is skipped, saying so ("Session tests-3.13 skipped:
Python interpreter 3.13 not found."), never downloaded; ``--error-on-missing-interpreters``
makes that a failure where every Python must be there (GitHub Actions).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import nox

# 3.14 runs on GitHub Actions (ci.yml); a machine without it skips its session, saying so.
PYTHONS = ["3.11", "3.12", "3.13", "3.14"]
# The package with every extra, and the tools its tests and linters use.
EVERYTHING = (".[emulator,qt,jupyter,locust,pygame,textual,kivy,marimo]", "--group", "dev")

nox.needs_version = ">=2025.10.14"
nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = False
nox.options.download_python = "never"
# The suites in the order scripts/test.sh starts them: the longest first.
nox.options.sessions = [
    "lowest",
    "e2e",
    *(f"tests-{python}" for python in PYTHONS),
    "lint",
    "build",
    "docs",
]


def _pyenv_pythons_first() -> None:
    """Put pyenv's interpreters of `PYTHONS`, where it has them, on PATH before its shims.

    pyenv keeps every version under ``$PYENV_ROOT/versions``, but only the selected ones
    answer through its shims (an unselected ``python3.13`` shim fails).
    """
    if sys.platform == "win32":
        return
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found: list[str] = []
    for python in PYTHONS:
        patches = [
            (int(folder.name.rsplit(".", 1)[1]), folder / "bin")
            for folder in versions.glob(f"{python}.*")
            if re.fullmatch(rf"{re.escape(python)}\.\d+", folder.name)
            and (folder / "bin" / f"python{python}").exists()
        ]
        if patches:
            found.append(str(max(patches)[1]))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_pyenv_pythons_first()


# End-to-end tests (marker ``e2e``: a real browser, a fleet of Locust processes, the
# vendor's server) exercise no Python-version-specific code of their own beyond what the
# suites cover, and cost minutes each: they run once, in the `e2e` session.
NOT_E2E = ("-m", "not e2e")


@nox.session(python=PYTHONS[0], tags=["suite"])
def lowest(session: nox.Session) -> None:
    """The whole test suite on the oldest versions pyproject.toml allows.

    Every direct dependency (runtime, extras, the `dev` group) at its lower bound, on the
    oldest Python: the bounds are real.
    """
    session.install("--resolution", "lowest-direct", *EVERYTHING)
    session.run("uv", "pip", "list", "--format", "freeze", silent=False)
    session.run("pytest", *NOT_E2E, *session.posargs)


@nox.session(python="3.12", tags=["suite"])
def e2e(session: nox.Session) -> None:
    """The end-to-end tests (pytest marker ``e2e``), on the Python the vendor's server uses."""
    session.install(*EVERYTHING)
    session.run("pytest", "-m", "e2e", *session.posargs)


@nox.session(python=PYTHONS, tags=["suite"])
def tests(session: nox.Session) -> None:
    """The whole test suite on one Python, but for the end-to-end tests."""
    session.install(*EVERYTHING)
    session.run("pytest", *NOT_E2E, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy --strict and actionlint (on nox's own Python, so never skipped)."""
    session.install(*EVERYTHING, "--group", "nox", "--group", "check")
    paths = ("src", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("mypy", "--strict", "src", "tests/typing/check_public_types.py", "noxfile.py")
    session.run("actionlint", "-color")


@nox.session
def build(session: nox.Session) -> None:
    """The sdist and wheel, twine-checked; the wheel alone in a fresh venv runs the demo.

    The wheel is built from the sdist, so that both hold what they must. The fresh
    virtualenv is made by venv and filled by pip, as a user would (README's first command).
    """
    session.install("--group", "check")
    with tempfile.TemporaryDirectory() as scratch:
        dist = Path(scratch, "dist")
        session.run("uv", "build", "--out-dir", str(dist))
        (sdist,), (wheel,) = dist.glob("*.tar.gz"), dist.glob("*.whl")
        session.run("twine", "check", "--strict", str(sdist), str(wheel))
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        if not licenses:
            session.error(f"{wheel.name} does not ship the LICENSE")
        page = [f"timeback_client/emulator/inspector/{name}" for name in INSPECTOR_FILES]
        missing = sorted(set(page) - set(names))
        if missing:
            session.error(f"{wheel.name} does not ship the emulator's page: {missing}")

        venv = Path(scratch, "venv")
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
        scripts, exe = ("Scripts", ".exe") if sys.platform == "win32" else ("bin", "")
        pip = [str(venv / scripts / f"python{exe}"), "-m", "pip", "--disable-pip-version-check"]
        session.run(*pip, "install", "--quiet", f"{wheel}[emulator]", external=True)
        # Away from the sources, so that only the installed wheel can be imported.
        session.chdir(scratch)
        session.run(str(venv / scripts / f"timeback-client{exe}"), "demo", external=True)
        # The installed emulator serves its inspector page from the wheel's own files.
        python = str(venv / scripts / f"python{exe}")
        session.run(python, "-c", SERVES_THE_PAGE, external=True)


#: The emulator's inspector page: package data the wheel must carry.
INSPECTOR_FILES = ("index.html", "inspector.css", "inspector.js")
SERVES_THE_PAGE = """
import httpx
from timeback_client.emulator import Emulator
with Emulator() as emulator, emulator.serve_in_thread() as url:
    origin = url.removesuffix(emulator.mount)
    for path in ("/_emulator/", "/_emulator/inspector.js", "/_emulator/inspector.css"):
        answer = httpx.get(origin + path)
        assert answer.status_code == 200 and answer.content, (path, answer.status_code)
"""


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built with ``--strict``: a broken link or reference fails."""
    session.install("-e", ".", "--group", "docs")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        f"{session.create_tmp()}/site",
        env={"NO_MKDOCS_2_WARNING": "1"},
    )
