"""Batches from the composing processes to the serving process through shared memory.

A process pool returns results through a pipe: the worker pickles a batch (a copy), writes it
into the pipe 64 KiB at a time (a kernel copy, and a switch to the reader for every 64 KiB when
both share a core), and the serving process reads it into a growing buffer (copies on every
growth) and unpickles it (another copy). For a 4 MiB batch that was most of what serving a
stream cost the replica besides gRPC itself.

Instead each worker owns a few slots in an anonymous shared file (`memfd_create`). It writes a
batch's pieces straight into a free slot and returns only a `SlotRef`; the serving process maps
the worker's file once (through /proc/<pid>/fd), copies the batch out into the bytes gRPC sends,
and frees the slot. Nothing is named in /dev/shm, so nothing can leak and its size limit (64 MiB
in a default Docker container) does not apply: the kernel frees the memory once the worker and
the mapping are gone, whatever way they go.

A slot's state byte (0 free, 1 taken) changes only under one lock shared by all the processes,
so the copy out of a slot is ordered before the slot is reused on any CPU. A batch larger than a
slot, a moment when every slot is taken, or a system without memfd (macOS) or without access to
/proc sends the batch through the pipe as before: slower, never wrong.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

_HEADER = 4096  # one page of state bytes before the first slot
LOCK_SECONDS = 5.0  # the lock is held for microseconds; longer means its holder died in it


class Lock(Protocol):
    """A lock shared by processes (multiprocessing.Lock)."""

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool: ...
    def release(self) -> None: ...


@dataclass(frozen=True)
class SlotRef:
    """Where a worker left a batch: its process, its shared file, the slot and the length."""

    pid: int
    fd: int
    inode: int  # of the file, so a reused pid and fd cannot pass for it
    size: int  # of the whole file
    slot: int
    offset: int
    length: int


class Flag(Protocol):
    """A shared byte (multiprocessing.RawValue("b")): 0 turns the slots off."""

    value: int


class SlotWriter:
    """A worker's slots; `put` writes a batch into one and says where, or returns None."""

    def __init__(
        self, lock: Lock, slots: int, slot_bytes: int, enabled: Flag | None = None
    ) -> None:
        if slots > _HEADER:
            raise ValueError(f"at most {_HEADER} slots per worker, got {slots}")
        self._lock = lock
        self._enabled = enabled
        self.slots = slots
        self.slot_bytes = slot_bytes
        self._fd: int | None = None
        self._inode = 0
        self._map: mmap.mmap | None = None
        self._broken = slots <= 0 or not hasattr(os, "memfd_create")

    def _open(self) -> mmap.mmap | None:
        """The shared file, made on first use (None where it cannot be made)."""
        if self._map is None and not self._broken:
            size = _HEADER + self.slots * self.slot_bytes
            try:
                self._fd = os.memfd_create("synthloc-batches", os.MFD_CLOEXEC)
                os.ftruncate(self._fd, size)  # sparse: a page costs memory once written
                self._inode = os.fstat(self._fd).st_ino
                self._map = mmap.mmap(self._fd, size)
            except OSError as exc:
                log.info("batches go through the pipe: no shared file (%s)", exc)
                self._broken = True
        return self._map

    def put(self, pieces: Sequence[bytes | memoryview]) -> SlotRef | None:
        """Write the concatenated pieces into a free slot; None when the pipe must carry them."""
        if self._enabled is not None and not self._enabled.value:
            return None
        length = sum(len(p) for p in pieces)
        if length > self.slot_bytes or (buffer := self._open()) is None:
            return None
        if not self._lock.acquire(timeout=LOCK_SECONDS):
            return None  # held by a process that died inside it: the pipe still works
        try:
            slot = buffer.find(b"\0", 0, self.slots)  # the lowest: few pages are ever touched
            if slot < 0:
                return None
            buffer[slot] = 1
        finally:
            self._lock.release()
        offset = _HEADER + slot * self.slot_bytes
        view = memoryview(buffer)
        try:
            for piece in pieces:
                view[offset : offset + len(piece)] = piece
                offset += len(piece)
        except BaseException:
            buffer[slot] = 0  # ours alone since we took it: give it back
            raise
        finally:
            view.release()
        assert self._fd is not None
        return SlotRef(
            os.getpid(), self._fd, self._inode, len(buffer), slot, offset - length, length
        )

    def close(self) -> None:
        """Unmap and close the file (the serving process's mapping stays valid)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SlotReader:
    """The serving process's side: copy a batch out of its slot and free the slot."""

    def __init__(self, lock: Lock) -> None:
        self._lock = lock
        self._maps: dict[tuple[int, int, int], mmap.mmap] = {}
        self._maps_lock = threading.Lock()

    def _map(self, ref: SlotRef) -> mmap.mmap:
        key = (ref.pid, ref.fd, ref.inode)
        with self._maps_lock:
            if key not in self._maps:
                fd = os.open(f"/proc/{ref.pid}/fd/{ref.fd}", os.O_RDWR)
                try:
                    if os.fstat(fd).st_ino != ref.inode:
                        raise FileNotFoundError(f"process {ref.pid} no longer has that file")
                    self._maps[key] = mmap.mmap(fd, ref.size)
                finally:
                    os.close(fd)  # the mapping keeps the file
            return self._maps[key]

    def take(self, ref: SlotRef) -> bytes:
        """The batch's bytes; its slot is free again once this returns."""
        buffer = self._map(ref)
        try:
            return buffer[ref.offset : ref.offset + ref.length]
        finally:
            # A worker killed inside the lock (OOM) leaves it held: the batch is still good,
            # only its slot stays taken, and the broken pool ends the replica's streams anyway.
            if self._lock.acquire(timeout=LOCK_SECONDS):
                try:
                    buffer[ref.slot] = 0
                finally:
                    self._lock.release()
            else:
                log.warning(
                    "slot %d of process %d stays taken: its lock is held", ref.slot, ref.pid
                )

    def close(self) -> None:
        """Unmap every worker's file."""
        with self._maps_lock:
            for buffer in self._maps.values():
                buffer.close()
            self._maps.clear()
