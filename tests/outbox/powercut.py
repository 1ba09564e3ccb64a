"""A test-only SQLite VFS that can cut the power, the way SQLite's own crash tests do.

It wraps the default VFS of the very library the ``sqlite3`` module uses (registered with
ctypes as the new default, so the outbox's own connections go through it unchanged) and
keeps, for each file under one directory, what reached the disk: the file as it was
first seen, then every write, truncation and deletion, and how far the last sync got.
Only a sync makes writes durable. `PowerCutVFS.cut` then tells what the files would hold
if the power went out at that instant, between two I/O calls: everything synced, plus
any subset of the unsynced writes (each one lost, kept, or torn at a 512-byte sector),
since a disk may write back its cache in any order and a crash may stop it anywhere.

(APSW can define a VFS in Python too, but in its own copy of SQLite, which the
connections of the ``sqlite3`` module never see: this wraps the library they use.)

Memory-mapped I/O is switched off by offering version 2 of the file methods, so every
byte goes through ``xWrite``. The ``-shm`` file is left out: SQLite opens it itself, not
through ``xOpen``, and rebuilds it from the WAL after a crash, so a cut drops it.

Linux only: the library is found in ``/proc/self/maps``.
"""

from __future__ import annotations

import ctypes
import random
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs

SQLITE_OK: Final = 0
SQLITE_IOERR: Final = 10
SECTOR: Final = 512

_int = ctypes.c_int
_i64 = ctypes.c_int64
_ptr = ctypes.c_void_p

_OPEN = ctypes.CFUNCTYPE(_int, _ptr, _ptr, _ptr, _int, ctypes.POINTER(_int))
_DELETE = ctypes.CFUNCTYPE(_int, _ptr, _ptr, _int)
_CLOSE = ctypes.CFUNCTYPE(_int, _ptr)
_READ = ctypes.CFUNCTYPE(_int, _ptr, _ptr, _int, _i64)
_WRITE = ctypes.CFUNCTYPE(_int, _ptr, _ptr, _int, _i64)
_TRUNCATE = ctypes.CFUNCTYPE(_int, _ptr, _i64)
_SYNC = ctypes.CFUNCTYPE(_int, _ptr, _int)
_FILE_SIZE = ctypes.CFUNCTYPE(_int, _ptr, ctypes.POINTER(_i64))
_LOCK = ctypes.CFUNCTYPE(_int, _ptr, _int)
_CHECK_RESERVED = ctypes.CFUNCTYPE(_int, _ptr, ctypes.POINTER(_int))
_FILE_CONTROL = ctypes.CFUNCTYPE(_int, _ptr, _int, _ptr)
_PLAIN = ctypes.CFUNCTYPE(_int, _ptr)  # xSectorSize, xDeviceCharacteristics
_SHM_MAP = ctypes.CFUNCTYPE(_int, _ptr, _int, _int, _int, _ptr)
_SHM_LOCK = ctypes.CFUNCTYPE(_int, _ptr, _int, _int, _int)
_SHM_BARRIER = ctypes.CFUNCTYPE(None, _ptr)
_SHM_UNMAP = ctypes.CFUNCTYPE(_int, _ptr, _int)


class _Vfs(ctypes.Structure):
    _fields_ = [
        ("iVersion", _int),
        ("szOsFile", _int),
        ("mxPathname", _int),
        ("pNext", _ptr),
        ("zName", ctypes.c_char_p),
        ("pAppData", _ptr),
        ("xOpen", _ptr),
        ("xDelete", _ptr),
        *((name, _ptr) for name in (
            "xAccess", "xFullPathname", "xDlOpen", "xDlError", "xDlSym", "xDlClose",
            "xRandomness", "xSleep", "xCurrentTime", "xGetLastError", "xCurrentTimeInt64",
            "xSetSystemCall", "xGetSystemCall", "xNextSystemCall",
        )),
    ]  # fmt: skip


_METHODS: Final = (
    ("xClose", _CLOSE),
    ("xRead", _READ),
    ("xWrite", _WRITE),
    ("xTruncate", _TRUNCATE),
    ("xSync", _SYNC),
    ("xFileSize", _FILE_SIZE),
    ("xLock", _LOCK),
    ("xUnlock", _LOCK),
    ("xCheckReservedLock", _CHECK_RESERVED),
    ("xFileControl", _FILE_CONTROL),
    ("xSectorSize", _PLAIN),
    ("xDeviceCharacteristics", _PLAIN),
    ("xShmMap", _SHM_MAP),
    ("xShmLock", _SHM_LOCK),
    ("xShmBarrier", _SHM_BARRIER),
    ("xShmUnmap", _SHM_UNMAP),
)


class _IoMethods(ctypes.Structure):
    _fields_ = [("iVersion", _int), *((name, kind) for name, kind in _METHODS)]


class _RealIoMethods(ctypes.Structure):
    _fields_ = [("iVersion", _int), *((name, _ptr) for name, _ in _METHODS)]


# Room before the wrapped VFS's own file structure: our pMethods, then alignment.
_HEADER: Final = 16


def sqlite_library() -> ctypes.CDLL | None:
    """The shared libsqlite3 the ``sqlite3`` module runs on, or None (static, not Linux)."""
    import _sqlite3  # noqa: F401 - loads the library into this process

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) >= 6 and "/libsqlite3" in fields[-1]:
            return ctypes.CDLL(fields[-1])
    return None


@attrs.define(eq=False)
class _File:
    """What reached one file: its first content, then every change, and the synced part."""

    base: bytes | None  # None: absent
    ops: list[tuple[int, str, int, bytes]] = attrs.Factory(list)  # (seq, kind, offset, data)
    synced: int = 0  # ops[:synced] are on the disk

    def image(self, upto: int | None, keep: Callable[[int], int] | None) -> bytes | None:
        """The content after the synced changes, plus unsynced ones as ``keep`` says (the
        bytes of a write of that length that reach the disk; None: all of every write),
        with the changes numbered ``upto`` at most."""
        content = None if self.base is None else bytearray(self.base)
        for index, (seq, kind, offset, data) in enumerate(self.ops):
            if upto is not None and seq > upto:
                break
            if keep is not None and index >= self.synced:
                kept = keep(len(data))
                if kept < 0 or (kind == "write" and kept == 0):
                    continue  # this change never reached the disk
                data = data[:kept]
            if kind == "delete":
                content = None
            elif kind == "create":
                content = bytearray() if content is None else content
            elif kind == "truncate":
                content = (content or bytearray())[:offset]
            else:
                content = content if content is not None else bytearray()
                if len(content) < offset:
                    content.extend(bytes(offset - len(content)))
                content[offset : offset + len(data)] = data
        return None if content is None else bytes(content)


@attrs.define(eq=False)
class _Handle:
    real: int  # the wrapped VFS's file structure
    methods: _RealIoMethods
    path: str | None  # tracked files only


@attrs.frozen
class Cut:
    """The files as a power cut at one instant leaves them, and as the last committed
    transaction left them (what the outbox had told its callers was stored)."""

    files: dict[str, bytes]  # path -> content; absent files are left out
    committed: dict[str, bytes]
    syncs: int  # syncs of tracked files so far


class PowerCutVFS:
    """Wraps the default VFS for every connection opened after `install`; tracks the files
    under ``root``. Use one per process (it stays registered for the process's life)."""

    def __init__(self, library: ctypes.CDLL, root: Path, *, name: str = "powercut") -> None:
        self.root = str(root.resolve())
        self.lock = threading.RLock()
        self.errors: list[str] = []
        self.syncs = 0
        self._files: dict[str, _File] = {}
        self._handles: dict[int, _Handle] = {}
        self._seq = 0
        self._committed = 0
        self._real_methods: dict[int, _RealIoMethods] = {}
        self._real_calls: dict[tuple[int, str], Any] = {}
        self._library = library
        library.sqlite3_vfs_find.restype = ctypes.POINTER(_Vfs)
        library.sqlite3_vfs_find.argtypes = [ctypes.c_char_p]
        library.sqlite3_vfs_register.argtypes = [ctypes.POINTER(_Vfs), _int]
        real = library.sqlite3_vfs_find(None)
        if not real:
            raise RuntimeError("no default SQLite VFS")
        self._real_vfs = real
        self._name = name.encode()
        vfs = _Vfs()
        ctypes.pointer(vfs)[0] = real[0]  # every method but open and delete: the real ones
        vfs.iVersion = real[0].iVersion
        vfs.szOsFile = _HEADER + real[0].szOsFile
        vfs.zName = self._name
        vfs.pNext = None
        self._open_cb = _OPEN(self._x_open)
        self._delete_cb = _DELETE(self._x_delete)
        vfs.xOpen = ctypes.cast(self._open_cb, _ptr).value
        vfs.xDelete = ctypes.cast(self._delete_cb, _ptr).value
        self._vfs = vfs
        # Writes, truncations, syncs and closes are noted; every other call goes straight
        # to the wrapped file.
        self._methods = _IoMethods(
            2,
            *(
                kind(getattr(self, "_" + name, None) or self._passthrough(name))
                for name, kind in _METHODS
            ),
        )

    def install(self) -> None:
        """Make this the default VFS of the process's SQLite."""
        rc = self._library.sqlite3_vfs_register(ctypes.byref(self._vfs), 1)
        if rc != SQLITE_OK:
            raise RuntimeError(f"sqlite3_vfs_register: {rc}")
        sqlite3.connect(":memory:").close()

    # -- what the tests ask ------------------------------------------------------------

    def mark_committed(self) -> None:
        """A transaction has committed: what was written so far is what callers were told
        is stored."""
        with self.lock:
            self._committed = self._seq

    def cut(self, rng: random.Random, *, mode: str) -> Cut:
        """The files if the power went out now. ``mode``: ``"synced"`` (every unsynced
        write lost) or ``"scrambled"`` (each lost, kept or torn, at random)."""

        def scrambled(length: int) -> int:
            fate = rng.choices(("lose", "keep", "tear"), weights=(5, 4, 1))[0]
            if fate == "lose":
                return -1
            if fate == "tear" and length > SECTOR:
                return SECTOR * rng.randrange(length // SECTOR)  # whole sectors, in order
            return length

        def lost(_length: int) -> int:
            return -1

        with self.lock:
            keep = lost if mode == "synced" else scrambled
            files = {p: f.image(None, keep) for p, f in self._files.items()}
            committed = {p: f.image(self._committed, None) for p, f in self._files.items()}
            return Cut(
                files={p: c for p, c in files.items() if c is not None},
                committed={p: c for p, c in committed.items() if c is not None},
                syncs=self.syncs,
            )

    # -- the VFS -----------------------------------------------------------------------

    def _tracked(self, name: int | None) -> str | None:
        if not name:
            return None
        path = ctypes.string_at(name).decode()
        return path if path.startswith(self.root + "/") else None

    def _record(self, path: str, kind: str, offset: int = 0, data: bytes = b"") -> None:
        file = self._files[path]
        self._seq += 1
        file.ops.append((self._seq, kind, offset, data))
        if kind in ("create", "delete"):
            file.synced = len(file.ops)  # a directory entry: taken as made at once

    def _x_open(self, vfs: int, name: int | None, file: int, flags: int, out: Any) -> int:
        try:
            real_file = file + _HEADER
            real = self._real_vfs[0]
            rc = _OPEN(real.xOpen)(ctypes.cast(self._real_vfs, _ptr), name, real_file, flags, out)
            real_methods = ctypes.cast(real_file, ctypes.POINTER(_ptr))[0]
            head = ctypes.cast(file, ctypes.POINTER(_ptr))
            if not real_methods:
                head[0] = None
                return int(rc)
            with self.lock:
                path = self._tracked(name)
                if path is not None:
                    if path not in self._files:
                        self._files[path] = _File(base=Path(path).read_bytes())
                    elif self._files[path].image(None, None) is None:
                        self._record(path, "create")
                methods = self._real_methods.get(real_methods)
                if methods is None:
                    methods = _RealIoMethods.from_address(real_methods)
                    self._real_methods[real_methods] = methods
                self._handles[file] = _Handle(real=real_file, methods=methods, path=path)
            head[0] = ctypes.addressof(self._methods)
            return int(rc)
        except BaseException as exc:  # never let an exception cross into C
            self.errors.append(f"xOpen: {exc!r}")
            return SQLITE_IOERR

    def _x_delete(self, vfs: int, name: int, sync_dir: int) -> int:
        try:
            real = self._real_vfs[0]
            with self.lock:
                rc = int(_DELETE(real.xDelete)(ctypes.cast(self._real_vfs, _ptr), name, sync_dir))
                path = self._tracked(name)
                if rc == SQLITE_OK and path is not None and path in self._files:
                    self._record(path, "delete")
            return rc
        except BaseException as exc:
            self.errors.append(f"xDelete: {exc!r}")
            return SQLITE_IOERR

    def _call(self, file: int, name: str, *args: Any) -> Any:
        handle = self._handles[file]
        key = (ctypes.addressof(handle.methods), name)
        function = self._real_calls.get(key)
        if function is None:
            function = dict(_METHODS)[name](getattr(handle.methods, name))
            self._real_calls[key] = function
        return function(handle.real, *args)

    def _guarded(self, name: str, work: Callable[[], int]) -> int:
        try:
            return work()
        except BaseException as exc:
            self.errors.append(f"{name}: {exc!r}")
            return SQLITE_IOERR

    def _xClose(self, file: int) -> int:
        def close() -> int:
            rc = int(self._call(file, "xClose"))
            with self.lock:
                del self._handles[file]
            return rc

        return self._guarded("xClose", close)

    def _xWrite(self, file: int, buffer: int, amount: int, offset: int) -> int:
        def write() -> int:
            with self.lock:
                rc = int(self._call(file, "xWrite", buffer, amount, offset))
                path = self._handles[file].path
                if rc == SQLITE_OK and path is not None:
                    self._record(path, "write", offset, ctypes.string_at(buffer, amount))
                return rc

        return self._guarded("xWrite", write)

    def _xTruncate(self, file: int, size: int) -> int:
        def truncate() -> int:
            with self.lock:
                rc = int(self._call(file, "xTruncate", size))
                path = self._handles[file].path
                if rc == SQLITE_OK and path is not None:
                    self._record(path, "truncate", size)
                return rc

        return self._guarded("xTruncate", truncate)

    def _xSync(self, file: int, flags: int) -> int:
        def sync() -> int:
            with self.lock:
                rc = int(self._call(file, "xSync", flags))
                path = self._handles[file].path
                if rc == SQLITE_OK and path is not None:
                    self._files[path].synced = len(self._files[path].ops)
                    self.syncs += 1
                return rc

        return self._guarded("xSync", sync)

    def _xShmBarrier(self, file: int) -> None:
        try:
            self._call(file, "xShmBarrier")
        except BaseException as exc:
            self.errors.append(f"xShmBarrier: {exc!r}")

    def _passthrough(self, name: str) -> Callable[..., int]:
        def call(file: int, *args: Any) -> int:
            return self._guarded(name, lambda: int(self._call(file, name, *args)))

        return call
