"""Shared pytest configuration for the core SDK's tests."""

from __future__ import annotations

import pytest

# `pytester`: the pytest plugin's own tests run a small test suite in process.
pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def private_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own state and cache directories, so the default outbox (and
    its former place) is its own, in child processes too: the XDG variables on Linux,
    and on macOS and Windows those platformdirs honours there (from 4.8 on)."""
    state, cache = tmp_path_factory.mktemp("state"), tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("WIN_PD_OVERRIDE_LOCAL_APPDATA", str(state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("LOCALAPPDATA", str(cache))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return str(request.param)
