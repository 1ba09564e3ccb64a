"""Fixtures of the emulator's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from emulator_bodies import STUDENTS

from timeback_client.emulator import Emulator


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return str(request.param)


#: What the ``emulator`` fixture's clock says, whatever the day the tests run.
NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(students=STUDENTS, clock=lambda: NOW) as emulator:
        yield emulator


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """Ada's client, in process."""
    async with httpx.AsyncClient(
        transport=emulator.transport(),
        base_url="http://emulator" + emulator.mount,
        headers={"Authorization": "Bearer tok-ada"},
    ) as client:
        yield client
