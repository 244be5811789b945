"""SQLite files that are encrypted on the disk under a key that lives only in this process.

The search-index image of a SQLite full backup (indeximage.py) is written by SQLite itself, with
random access, so it cannot be streamed into the backup while it is made, and it holds the
index's plaintext clinical values. This module registers a SQLite VFS, ``medarchive-sealed``,
that wraps the default one: every byte SQLite writes through it is encrypted with AES-256-CTR
under a random key held in memory (``open_key``), and decrypted when SQLite reads it back. The
scratch file on the disk is ciphertext; once the key is dropped, nothing written there can be
read again, removed or not.

Keystreams are never reused: the file is encrypted in units of ``UNIT`` bytes, each with a
write counter kept in memory beside the key (1 at its first write, one more at each rewrite),
and a unit's counter block is ``generation << 64 | byte offset / 16``. Whole-unit writes to
consecutive units are gathered and encrypted together (one AES call for up to ``BATCH``
bytes), so the cost per page is a Python call and a copy.

Only main database files open through the VFS: journals and temporary files, which would hold
pages in plaintext, are refused (the image is written with ``journal_mode=OFF``), and the files
have no shared memory (no WAL mode). The VFS is reached through the SQLite library of the
``sqlite3`` module (``ctypes``); where it cannot be (a Python with a private SQLite whose
symbols are hidden), ``available()`` is False and a backup copies the index as rows instead.
"""

from __future__ import annotations

import ctypes
import os
import threading
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

NAME = "medarchive-sealed"
UNIT = 4096  # bytes per write counter (SQLite's default page size)
BATCH = 4 << 20  # bytes of consecutive whole units encrypted at once
CALL = 64 << 10  # bytes per call of the wrapped VFS's xRead/xWrite
_OK, _CANTOPEN, _SHORT_READ = 0, 14, 522
_IOERR_READ, _IOERR_WRITE, _IOERR_FSYNC, _IOERR_TRUNCATE, _IOERR_FSTAT, _IOERR_CLOSE = (
    10 | (n << 8) for n in (1, 3, 4, 6, 7, 16))
_OPEN_MAIN_DB = 0x100

_i64 = ctypes.c_int64
_CLOSE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_READ = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, _i64)
_TRUNCATE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, _i64)
_SYNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
_SIZE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_i64))
_OPEN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p,
                         ctypes.c_int, ctypes.c_void_p)


class _Methods(ctypes.Structure):
    """``sqlite3_io_methods`` of version 1 (no shared memory, no memory mapping: every byte
    goes through xRead/xWrite); the pointers not replaced are the wrapped VFS's own."""

    _fields_ = [("iVersion", ctypes.c_int), ("xClose", ctypes.c_void_p),
                ("xRead", ctypes.c_void_p), ("xWrite", ctypes.c_void_p),
                ("xTruncate", ctypes.c_void_p), ("xSync", ctypes.c_void_p),
                ("xFileSize", ctypes.c_void_p), ("xLock", ctypes.c_void_p),
                ("xUnlock", ctypes.c_void_p), ("xCheckReservedLock", ctypes.c_void_p),
                ("xFileControl", ctypes.c_void_p), ("xSectorSize", ctypes.c_void_p),
                ("xDeviceCharacteristics", ctypes.c_void_p)]


class _Vfs(ctypes.Structure):
    """``sqlite3_vfs`` of version 3 (15 function pointers follow xOpen)."""

    _fields_ = [("iVersion", ctypes.c_int), ("szOsFile", ctypes.c_int),
                ("mxPathname", ctypes.c_int), ("pNext", ctypes.c_void_p),
                ("zName", ctypes.c_char_p), ("pAppData", ctypes.c_void_p),
                ("xOpen", ctypes.c_void_p), ("rest", ctypes.c_void_p * 15)]


class _State:
    """The key and the units' write counters of one path (they outlive its handles)."""

    def __init__(self) -> None:
        self.key = os.urandom(32)
        self.generations = array("Q")

    def crypt(self, first: int, data: bytes) -> bytes:
        """``data`` starting at unit ``first``, encrypted or decrypted (CTR is symmetric);
        units never written (holes) are left as they are."""
        out = []
        units = -(-len(data) // UNIT)
        gens = self.generations[first:first + units]
        gens.extend([0] * (units - len(gens)))
        i = 0
        while i < units:
            j = i + 1
            while j < units and gens[j] == gens[i]:
                j += 1
            part = data[i * UNIT:j * UNIT]
            if gens[i] == 0:
                out.append(part)
            else:
                block = (gens[i] << 64 | (first + i) * UNIT // 16).to_bytes(16, "big")
                out.append(Cipher(algorithms.AES(self.key), modes.CTR(block)).encryptor()
                           .update(part))
            i = j
        return b"".join(out)

    def bump(self, first: int, units: int) -> None:
        gens = self.generations
        if len(gens) < first + units:
            gens.extend([0] * (first + units - len(gens)))
        for n in range(first, first + units):
            gens[n] += 1


class _File:
    """One open handle: the wrapped VFS's methods and the whole units waiting to be written."""

    def __init__(self, state: _State, real: _Methods) -> None:
        self.state = state
        self.real_read = _READ(real.xRead)
        self.real_write = _READ(real.xWrite)
        self.real_size = _SIZE(real.xFileSize)
        self.real_truncate = _TRUNCATE(real.xTruncate)
        self.real_sync = _SYNC(real.xSync)
        self.real_close = _CLOSE(real.xClose)
        self.pending: list[bytes] = []
        self.start = 0  # first unit of pending
        self.units = 0  # units pending

    def size(self, handle: int) -> int:
        self.flush(handle)
        out = _i64()
        if self.real_size(handle, ctypes.byref(out)) != _OK:
            raise OSError("cannot size the sealed file")
        return out.value

    def read(self, handle: int, amount: int, offset: int) -> bytes:
        end = self.size(handle)
        first = offset // UNIT
        have = min(end, offset + amount) - first * UNIT
        if have <= 0:
            return b""
        buffer = ctypes.create_string_buffer(have)
        for start in range(0, have, CALL):  # the unix VFS reads < 128 KiB a call
            part = min(CALL, have - start)
            if self.real_read(handle, ctypes.byref(buffer, start), part,
                              first * UNIT + start) != _OK:
                raise OSError("cannot read the sealed file")
        plain = self.state.crypt(first, buffer.raw)
        return plain[offset - first * UNIT:offset - first * UNIT + amount]

    def write(self, handle: int, data: bytes, offset: int) -> None:
        if offset % UNIT or len(data) % UNIT:  # part of a unit: read, patch, rewrite it
            self.flush(handle)
            first = offset // UNIT
            before = self.read(handle, offset - first * UNIT, first * UNIT)
            before += bytes(offset - first * UNIT - len(before))
            tail_end = -(-(offset + len(data)) // UNIT) * UNIT
            after = self.read(handle, tail_end - offset - len(data), offset + len(data))
            self._put(handle, first, before + data + after)
            return
        first = offset // UNIT
        if self.pending and first != self.start + self.units:
            self.flush(handle)
        if not self.pending:
            self.start = first
        self.pending.append(data)
        self.units += len(data) // UNIT
        if self.units * UNIT >= BATCH:
            self.flush(handle)

    def flush(self, handle: int) -> None:
        if self.pending:
            data, self.pending = b"".join(self.pending), []
            self.units = 0
            self._put(handle, self.start, data)

    def _put(self, handle: int, first: int, data: bytes) -> None:
        self.state.bump(first, -(-len(data) // UNIT))
        sealed = memoryview(self.state.crypt(first, data))
        for start in range(0, len(sealed), CALL):  # the unix VFS writes < 128 KiB a call
            part = sealed[start:start + CALL]
            if self.real_write(handle, part.tobytes(), len(part), first * UNIT + start) != _OK:
                raise OSError("cannot write the sealed file")

    def truncate(self, handle: int, size: int) -> int:
        self.flush(handle)
        del self.state.generations[-(-size // UNIT):]
        return int(self.real_truncate(handle, size))


def _guarded(code: int) -> Any:
    """A callback that answers SQLite ``code`` instead of letting an exception through (ctypes
    would report it and return 0, SQLITE_OK)."""
    def wrap(method: Any) -> Any:
        def call(self: _Registry, *args: Any) -> int:
            try:
                return int(method(self, *args))
            except Exception:  # any failure is an I/O error for SQLite
                return code
        return call
    return wrap


class _Registry:
    """The registered VFS: its structures and callbacks (kept alive here), the keys by path
    and the open handles."""

    def __init__(self, lib: Any) -> None:
        self.lock = threading.Lock()
        self.states: dict[str, _State] = {}
        self.files: dict[int, _File] = {}
        self.methods: dict[int, _Methods] = {}
        base = lib.sqlite3_vfs_find(None).contents
        self.real_open = _OPEN(base.xOpen)
        self.base = ctypes.addressof(base)
        self.callbacks = {"xOpen": _OPEN(self._open), "xClose": _CLOSE(self._close),
                          "xRead": _READ(self._read), "xWrite": _READ(self._write),
                          "xTruncate": _TRUNCATE(self._truncate), "xSync": _SYNC(self._sync),
                          "xFileSize": _SIZE(self._size)}
        self.vfs = _Vfs()
        ctypes.memmove(ctypes.byref(self.vfs), ctypes.byref(base), ctypes.sizeof(_Vfs))
        self.vfs.zName, self.vfs.pNext = NAME.encode(), None
        self.vfs.xOpen = ctypes.cast(self.callbacks["xOpen"], ctypes.c_void_p)
        if lib.sqlite3_vfs_register(ctypes.byref(self.vfs), 0) != _OK:
            raise OSError("cannot register the sealed SQLite VFS")

    @_guarded(_CANTOPEN)
    def _open(self, vfs: int, name: bytes | None, handle: int, flags: int, out: int) -> int:
        with self.lock:
            state = self.states.get(os.fsdecode(name)) if name else None
        if state is None or not flags & _OPEN_MAIN_DB:
            return _CANTOPEN  # no key given, or a journal or temporary file
        rc = int(self.real_open(self.base, name, handle, flags, out))
        if rc != _OK:
            return rc
        pointer = ctypes.c_void_p.from_address(handle).value
        if not pointer:
            return _CANTOPEN
        real = _Methods.from_address(pointer)
        mine = _Methods()
        ctypes.memmove(ctypes.byref(mine), ctypes.byref(real), ctypes.sizeof(_Methods))
        mine.iVersion = 1
        for field, callback in self.callbacks.items():
            if field != "xOpen":
                setattr(mine, field, ctypes.cast(callback, ctypes.c_void_p).value)
        with self.lock:
            self.files[handle] = _File(state, real)
            self.methods[handle] = mine
        ctypes.c_void_p.from_address(handle).value = ctypes.addressof(mine)
        return _OK

    @_guarded(_IOERR_CLOSE)
    def _close(self, handle: int) -> int:
        file = self.files[handle]
        try:
            file.flush(handle)
        finally:
            with self.lock:
                self.files.pop(handle)
                self.methods.pop(handle)
        return int(file.real_close(handle))

    @_guarded(_IOERR_READ)
    def _read(self, handle: int, buffer: int, amount: int, offset: int) -> int:
        data = self.files[handle].read(handle, amount, offset)
        ctypes.memmove(buffer, data, len(data))
        if len(data) < amount:
            ctypes.memset(buffer + len(data), 0, amount - len(data))
            return _SHORT_READ
        return _OK

    @_guarded(_IOERR_WRITE)
    def _write(self, handle: int, buffer: int, amount: int, offset: int) -> int:
        self.files[handle].write(handle, ctypes.string_at(buffer, amount), offset)
        return _OK

    @_guarded(_IOERR_TRUNCATE)
    def _truncate(self, handle: int, size: int) -> int:
        return self.files[handle].truncate(handle, size)

    @_guarded(_IOERR_FSYNC)
    def _sync(self, handle: int, flags: int) -> int:
        file = self.files[handle]
        file.flush(handle)
        return int(file.real_sync(handle, flags))

    @_guarded(_IOERR_FSTAT)
    def _size(self, handle: int, out: Any) -> int:
        out[0] = self.files[handle].size(handle)
        return _OK


_registry: _Registry | None = None
_failed = False
_registering = threading.Lock()


def _get() -> _Registry | None:
    global _registry, _failed
    with _registering:
        if _registry is None and not _failed:
            try:
                import _sqlite3
                lib = ctypes.CDLL(_sqlite3.__file__)
                lib.sqlite3_vfs_find.restype = ctypes.POINTER(_Vfs)
                lib.sqlite3_vfs_find.argtypes = [ctypes.c_char_p]
                lib.sqlite3_vfs_register.argtypes = [ctypes.POINTER(_Vfs), ctypes.c_int]
                _registry = _Registry(lib)
            except (ImportError, OSError, AttributeError, ValueError):
                _failed = True
        return _registry


def available() -> bool:
    """Whether sealed files can be used (the VFS reached the ``sqlite3`` module's SQLite)."""
    return _get() is not None


def uri(path: Path) -> str:
    """The SQLite URI that opens or attaches ``path`` through the sealed VFS."""
    return f"file:{quote(str(path.resolve()))}?vfs={NAME}"


def open_key(path: Path) -> None:
    """Give ``path`` a fresh random key: SQLite can now create and use it through
    ``uri(path)``, and ``plain_pieces`` read it back."""
    registry = _get()
    if registry is None:
        raise OSError("the sealed SQLite VFS is not available")
    with registry.lock:
        registry.states[str(path.resolve())] = _State()


def drop_key(path: Path) -> None:
    """Forget the key of ``path``: what was written there can no longer be read."""
    registry = _registry  # nothing to forget if the VFS was never registered
    if registry is not None:
        with registry.lock:
            registry.states.pop(str(path.resolve()), None)


def export_key(path: Path) -> bytes:
    """The key and write counters of the sealed file ``path``, for ``import_key`` in a process
    that reads it too (restore.py's loader processes; passed over their pipe, never written)."""
    registry = _get()
    if registry is None:
        raise OSError("the sealed SQLite VFS is not available")
    with registry.lock:
        state = registry.states[str(path.resolve())]
        return state.key + state.generations.tobytes()


def import_key(path: Path, exported: bytes) -> None:
    """Give ``path`` the key and write counters another process exported (``export_key``)."""
    registry = _get()
    if registry is None:
        raise OSError("the sealed SQLite VFS is not available")
    state = _State()
    state.key = exported[:32]
    state.generations = array("Q", exported[32:])
    with registry.lock:
        registry.states[str(path.resolve())] = state


def plain_pieces(path: Path, size: int) -> Iterator[bytes]:
    """The decrypted content of the sealed file ``path`` (closed by SQLite), in pieces of
    ``size`` bytes (whole units)."""
    registry = _get()
    if registry is None or size % UNIT:
        raise ValueError("pieces must be whole units of a sealed file")
    with registry.lock:
        state = registry.states[str(path.resolve())]
    with open(path, "rb") as handle:
        first = 0
        while sealed := handle.read(size):
            yield state.crypt(first, sealed)
            first += len(sealed) // UNIT


def keyed(path: Path) -> bool:
    """Whether ``path`` has a key (``open_key``): it is read and written through ``uri(path)``."""
    registry = _registry
    if registry is None:
        return False
    with registry.lock:
        return str(path.resolve()) in registry.states


def write_pieces(path: Path, pieces: Iterable[bytes]) -> None:
    """Write the plaintext ``pieces`` (whole units, but for the last) to the new file ``path``
    sealed under its key (``open_key``), as SQLite would through the VFS, so that SQLite reads
    it back through ``uri(path)``: only ciphertext reaches the disk."""
    registry = _get()
    if registry is None:
        raise OSError("the sealed SQLite VFS is not available")
    with registry.lock:
        state = registry.states[str(path.resolve())]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        first, whole = 0, True
        for piece in pieces:
            if not whole:
                raise ValueError("only the last piece of a sealed file may end inside a unit")
            units = -(-len(piece) // UNIT)
            whole = len(piece) % UNIT == 0
            state.bump(first, units)
            out.write(state.crypt(first, piece))
            first += units
