"""Whether an owner's process still runs: a dead owner's windows can be claimed at once,
without waiting for its lease (`_outbox.LEASE_SECONDS`) to run out.

POSIX asks with signal 0; Windows through the Win32 API, since ``os.kill(pid, 0)`` there
would send Ctrl-C to a process group.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final

__all__ = ["process_alive", "windows_process_alive"]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs."""
    if sys.platform == "win32":
        return windows_process_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: a check, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return False
    return True


_STILL_ACTIVE: Final = 259
_ERROR_ACCESS_DENIED: Final = 5
_PROCESS_QUERY_LIMITED_INFORMATION: Final = 0x1000


def windows_process_alive(pid: int, kernel32: Any = None) -> bool:
    """`process_alive` on Windows, through the Win32 API (``os.kill(pid, 0)`` there would
    send Ctrl-C to a process group). ``kernel32``: the DLL, or a stand-in in tests."""
    import ctypes

    if kernel32 is None:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        # Another user's process cannot be opened, yet it runs.
        return bool(kernel32.GetLastError() == _ERROR_ACCESS_DENIED)
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # could not tell: taken as alive (its lease still expires)
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
