"""The engine process's wire: pickles and raw array bytes on a connected socket, and the
shared slots a replica writes its prepared images into for the engine to read in place."""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import queue
import socket
import struct
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np


class Wire:
    """Length-prefixed pickles and raw array bytes on one socket, in both directions. After
    multiprocessing's authenticated handshake the socket is used directly: an image goes
    from the replica's array into the kernel and from the kernel into the engine's array,
    one copy each way with the GIL released (multiprocessing's own Connection copies a
    message of a MiB three times, holding the GIL for two of them)."""

    def __init__(self, conn: Connection) -> None:
        self.sock = socket.socket(fileno=os.dup(conn.fileno()))
        conn.close()
        self._sending = threading.Lock()  # one message's parts go out together

    def send(self, message: object, payload: memoryview | None = None) -> None:
        """A pickle whose arrays travel out of band (straight from their memory, no copy in
        this process), then `payload`'s bytes if any; from any thread."""
        buffers: list[pickle.PickleBuffer] = []
        data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
        views = [buffer.raw() for buffer in buffers]
        sizes = [len(data), *(view.nbytes for view in views)]
        head = _COUNT.pack(len(sizes)) + struct.pack(f"<{len(sizes)}Q", *sizes) + data
        with self._sending:
            for view in (head, *views, *([payload] if payload is not None else [])):
                self.sock.sendall(view)

    def send_fd(self, fd: int) -> None:
        """A file descriptor (SCM_RIGHTS): the other end gets its own, to the same file."""
        with self._sending:
            socket.send_fds(self.sock, [b"F"], [fd])

    def recv_fd(self) -> int:
        _, fds, _, _ = socket.recv_fds(self.sock, 1, 1)
        if not fds:
            raise EOFError("the other end closed the connection before sending its slots")
        return fds[0]

    def recv(self) -> Any:
        (count,) = _COUNT.unpack(self._exactly(_COUNT.size))
        sizes = struct.unpack(f"<{count}Q", self._exactly(8 * count))
        data = self._exactly(sizes[0])
        return pickle.loads(data, buffers=[self._buffer(size) for size in sizes[1:]])

    def recv_into(self, array: np.ndarray) -> np.ndarray:
        view, got = memoryview(array).cast("B"), 0
        while got < len(view):
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise EOFError("the other end closed the connection")
            got += n
        return array

    def _buffer(self, size: int) -> np.ndarray:
        return self.recv_into(np.empty(size, np.uint8))

    def _exactly(self, size: int) -> bytes:
        return self._buffer(size).tobytes()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


_COUNT = struct.Struct("<I")  # how many sizes follow: the pickle's, then each buffer's


class Slots:
    """`count` slots of `size` bytes in an anonymous shared file (memfd): a replica copies a
    prepared image into a free slot and sends only the slot's number; the engine reads the
    image where it lies (its batch copy is the only one). The file's pages are the replica's
    and the engine's at once and go with the last of them: nothing to clean up after a
    crash, and no /dev/shm, whose 64 MiB default in a container would be too small."""

    def __init__(self, count: int, size: int, fd: int | None = None) -> None:
        self.count, self.size = count, size
        self.fd = os.memfd_create("synthloc-engine-slots", os.MFD_CLOEXEC) if fd is None else fd
        if fd is None:
            os.ftruncate(self.fd, count * size)  # sparse: pages exist once written
        self._map = mmap.mmap(self.fd, count * size)
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(count):
            self._free.put(slot)

    @classmethod
    def available(cls) -> bool:
        """memfd is Linux's; elsewhere images travel through the socket."""
        return hasattr(os, "memfd_create")

    def close_fd(self) -> None:
        """The map keeps the file; the descriptor is needed only to send it."""
        os.close(self.fd)

    def take(self, nbytes: int) -> int | None:
        """A free slot for `nbytes`, or None (too big, or all in use: use the socket)."""
        if nbytes > self.size:
            return None
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return None

    def give_back(self, slot: int) -> None:
        self._free.put(slot)

    @property
    def free(self) -> int:
        return self._free.qsize()

    def view(self, slot: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        """The array in `slot` (checked: a bad number or size is a ValueError)."""
        array_type = np.dtype(dtype)
        nbytes = array_type.itemsize * int(np.prod(shape))
        if not 0 <= slot < self.count or nbytes > self.size:
            raise ValueError(f"slot {slot} cannot hold {nbytes} bytes")
        return np.ndarray(shape, array_type, buffer=self._map, offset=slot * self.size)
