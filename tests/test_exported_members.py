"""The public facade: `timeback_client.__all__` is exactly the public API."""

from __future__ import annotations

import importlib
import types

import pytest

import timeback_client


def _public_names() -> set[str]:
    # Subpackages (emulator, integrations, ...) are public too, but as modules of their own,
    # not as names of the facade.
    return {
        name
        for name, value in vars(timeback_client).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_lists_every_public_name_and_nothing_else() -> None:
    """A public name missing from __all__, or an extra one in it, fails here."""
    assert set(timeback_client.__all__) == _public_names()


def test_all_has_no_duplicates() -> None:
    names = timeback_client.__all__
    assert len(names) == len(set(names))


def test_the_issue_s_public_api_is_exported() -> None:
    """The names the issue promises users are all there."""
    promised = {"Timeback", "AsyncTimeback", "TimeOptions", "Activity", "Course"}
    assert promised <= set(timeback_client.__all__)


@pytest.mark.parametrize("name", timeback_client.__all__)
def test_every_exported_name_is_importable_and_reports_the_public_module(name: str) -> None:
    module = importlib.import_module("timeback_client")
    obj = getattr(module, name)
    if isinstance(obj, type | types.FunctionType):
        assert obj.__module__ == "timeback_client", f"{name} reports {obj.__module__}"
