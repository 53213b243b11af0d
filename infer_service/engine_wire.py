"""The engine process's wire: pickles and raw array bytes on a connected socket."""

from __future__ import annotations

import contextlib
import os
import pickle
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
