"""The outbox fault tests print their figures (faults tried, windows sent, lost, counted
twice, worst loss on SIGKILL) at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from outbox_kit import OPENED, TALLY


@pytest.fixture(autouse=True)
def close_outboxes() -> Iterator[None]:
    """Close every outbox a test opened through the kit's helpers."""
    yield
    while OPENED:
        OPENED.pop().close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = TALLY.lines()
    if lines:
        terminalreporter.section("outbox fault figures")
        for line in lines:
            terminalreporter.write_line(line)
