"""Keep freed heap memory in processes that pass multi-megabyte buffers around.

glibc's malloc serves large blocks (above a threshold that adapts up to 32 MiB) from the heap,
but gives the top of the heap back to the kernel whenever more than twice that threshold is
free. A process that builds, sends and drops a batch of a few MiB every few milliseconds then
maps fresh pages for every batch, and each page costs a fault. On a virtual machine a fault
costs a microsecond or more, and a 4 MiB buffer has 1024 of them, so copying a batch into a
fresh buffer cost ten times a memcpy (`benchmarks/synth_throughput.py` shows the effect on a
stream's serving cost).

`keep_freed_memory` raises the trim threshold, so freed memory stays in the process for the
next batch, and fixes the mmap threshold at its maximum, so blocks up to 32 MiB come from that
heap. The process keeps at most `trim_bytes` of freed memory beyond what it uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit on 64-bit systems
DEFAULT_TRIM_BYTES = 128 << 20


def keep_freed_memory(trim_bytes: int = DEFAULT_TRIM_BYTES) -> bool:
    """Apply the settings above to this process; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    done = mallopt(M_TRIM_THRESHOLD, trim_bytes) == 1 and done
    if not done:
        log.info("malloc settings not applied; large buffers will fault in fresh pages")
    return done
