"""keep_freed_memory: freed multi-MiB blocks stay in the process for the next batch."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from synthloc import memory

# Allocates and frees two 8 MiB blocks three times, then prints glibc's count of free bytes
# kept in the heap and of bytes in separately mapped blocks (mallinfo2).
_PROBE = """
import ctypes, sys
names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "keep":
    from synthloc.memory import keep_freed_memory
    print(keep_freed_memory())
else:
    print(None)
for _ in range(3):
    a = bytearray(8 << 20); b = bytearray(8 << 20); del a, b
info = libc.mallinfo2()
print(info.fordblks, info.hblkhd)
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


def _probe(mode: str) -> tuple[str, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1]), int(out[2])


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_freed_batches_stay_in_the_heap_instead_of_going_back_to_the_kernel() -> None:
    applied, kept, mapped = _probe("keep")
    assert applied == "True"
    assert kept >= 16 << 20  # both 8 MiB blocks are free in the heap, ready for the next batch
    assert mapped < 8 << 20  # neither block was mapped on its own (only blocks from imports)
    applied, kept, _ = _probe("default")
    assert applied == "None"
    assert kept < 4 << 20  # glibc's defaults gave the same memory back (the faults we avoid)


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False
