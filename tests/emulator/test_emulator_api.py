"""The emulator's public surface, and its isolation from the core package."""

from __future__ import annotations

import subprocess
import sys

import timeback_client.emulator as emulator_package

PUBLIC = {
    "DEFAULT_MOUNT",
    "FIXES",
    "RULES",
    "SESSION_COOKIE",
    "Course",
    "Emulator",
    "Fault",
    "FaultFields",
    "Faults",
    "Problem",
    "RecordRejected",
    "Refusal",
    "Run",
    "SentEvent",
    "UnknownRun",
    "Window",
    "add_cli_arguments",
    "run_from_args",
    "serve",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(emulator_package.__all__) == PUBLIC
    # "@py_..." names come from pytest's assertion rewriting of the installed plugin's
    # package, not from the emulator.
    exported = {name for name in dir(emulator_package) if not name.startswith(("_", "@"))}
    assert exported == PUBLIC
    for name in PUBLIC:
        assert getattr(emulator_package, name) is not None


def test_public_classes_claim_the_package() -> None:
    for name in PUBLIC:
        value = getattr(emulator_package, name)
        if isinstance(value, type):
            assert value.__module__.startswith("timeback_client.emulator.")


def test_importing_the_core_package_does_not_import_the_emulator_extra() -> None:
    code = (
        "import sys, timeback_client\n"
        "loaded = sorted(m for m in ('starlette', 'uvicorn', 'timeback_client.emulator')"
        " if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
