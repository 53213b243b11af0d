"""Shared slots between a worker and the serving process (synth_service/transfer.py)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from synth_service import transfer
from synth_service.transfer import SlotReader, SlotRef, SlotWriter

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)")

_WRITER: SlotWriter | None = None


def _init(lock) -> None:
    global _WRITER
    _WRITER = SlotWriter(lock, slots=2, slot_bytes=1 << 20)


def _put(seed: int) -> SlotRef | None:
    assert _WRITER is not None
    return _WRITER.put(_pieces(seed))


def _pieces(seed: int) -> list[bytes | memoryview]:
    pixels = np.random.default_rng(seed).integers(0, 256, (300, 301), np.uint8)
    return [b"head", memoryview(pixels).cast("B"), b"", bytes([seed]) * 1000]


def test_a_batch_written_by_a_worker_process_is_read_back_exactly() -> None:
    context = multiprocessing.get_context("spawn")
    lock = context.Lock()
    reader = SlotReader(lock)
    try:
        with ProcessPoolExecutor(1, context, initializer=_init, initargs=(lock,)) as pool:
            for seed in range(5):  # each slot freed by take is the one written next
                ref = pool.submit(_put, seed).result()
                assert ref is not None and ref.pid != os.getpid() and ref.slot == 0
                assert reader.take(ref) == b"".join(_pieces(seed))
            first, second = pool.submit(_put, 7).result(), pool.submit(_put, 8).result()
            assert (first.slot, second.slot) == (0, 1)
            assert pool.submit(_put, 9).result() is None  # both taken: the pipe carries it
            assert reader.take(second) == b"".join(_pieces(8))
            third = pool.submit(_put, 10).result()
            assert third.slot == 1 and reader.take(third) == b"".join(_pieces(10))
            assert reader.take(first) == b"".join(_pieces(7))
    finally:
        reader.close()


def test_what_cannot_go_in_a_slot_goes_through_the_pipe() -> None:
    lock = multiprocessing.Lock()
    big = SlotWriter(lock, slots=1, slot_bytes=100)
    assert big.put([b"x" * 101]) is None  # larger than a slot
    ref = big.put([b"x" * 100])
    assert ref is not None and ref.length == 100
    big.close()
    assert SlotWriter(lock, slots=0, slot_bytes=100).put([b"x"]) is None  # slots off
    off = multiprocessing.RawValue("b", 0)
    assert SlotWriter(lock, slots=4, slot_bytes=100, enabled=off).put([b"x"]) is None
    with pytest.raises(ValueError, match="at most 4096 slots"):
        SlotWriter(lock, slots=5000, slot_bytes=100)


def test_a_ref_to_another_file_is_refused() -> None:
    lock = multiprocessing.Lock()
    writer = SlotWriter(lock, slots=1, slot_bytes=100)
    ref = writer.put([b"abc"])
    assert ref is not None
    reader = SlotReader(lock)
    try:
        assert reader.take(ref) == b"abc"  # this process can map its own file
        stale = dataclasses.replace(ref, inode=ref.inode + 1)  # as after a pid and fd reuse
        with pytest.raises(FileNotFoundError, match="no longer has that file"):
            SlotReader(lock).take(stale)
    finally:
        reader.close()
        writer.close()


def test_a_lock_left_held_by_a_dead_process_delays_but_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transfer, "LOCK_SECONDS", 0.05)
    lock = multiprocessing.Lock()
    writer = SlotWriter(lock, slots=2, slot_bytes=100)
    reader = SlotReader(lock)
    try:
        ref = writer.put([b"abc"])
        assert ref is not None
        lock.acquire()  # as if a worker had been killed inside it
        assert writer.put([b"def"]) is None  # the pipe carries the next batch
        assert reader.take(ref) == b"abc"  # the batch is read; its slot stays taken
        lock.release()
        again = writer.put([b"ghi"])
        assert again is not None and again.slot == 1
    finally:
        reader.close()
        writer.close()


def test_a_piece_that_cannot_be_written_gives_its_slot_back() -> None:
    lock = multiprocessing.Lock()
    writer = SlotWriter(lock, slots=1, slot_bytes=100)
    try:
        wide = memoryview(np.zeros(4, np.uint16))  # not bytes: refused by the slot's view
        with pytest.raises((ValueError, TypeError)):
            writer.put([b"ab", wide])
        ref = writer.put([b"cd"])
        assert ref is not None and ref.slot == 0
    finally:
        writer.close()
