"""The version of timeback-client, read once from the installed package's metadata.

One source for ``timeback_client.__version__``, ``timeback-client --version`` and the
``User-Agent`` of every heartbeat; the number itself lives only in ``pyproject.toml``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Final

__all__ = ["UNKNOWN_VERSION", "VERSION", "installed_version"]

DISTRIBUTION: Final = "timeback-client"
# A valid PEP 440 version that sorts below every release: sources that were never installed.
UNKNOWN_VERSION: Final = "0+unknown"


def installed_version(distribution: str = DISTRIBUTION) -> str:
    """The installed version of ``distribution``, or `UNKNOWN_VERSION` if it is not installed."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return UNKNOWN_VERSION


VERSION: Final = installed_version()
