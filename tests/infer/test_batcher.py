"""DynamicBatcher's policy and BatchSizeTuner, with stand-in localizers whose runs we control."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from infer_service.batch_tuning import BatchSizeTuner
from infer_service.batcher import DynamicBatcher
from infer_service.repository import LoadedModel
from synthloc.errors import ResourceExhausted, Unavailable

SHAPE = (1, 8, 8)


class GatedLocalizer:
    """Runs return the batch itself; a run waits for the gate while the gate is closed."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.running = threading.Event()
        self.batch_sizes: list[int] = []
        self.threads: list[str] = []
        self.computing = 0
        self.most_computing = 0

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.computing += 1
        self.most_computing = max(self.most_computing, self.computing)
        self.running.set()
        assert self.gate.wait(10)
        self.batch_sizes.append(len(batch))
        self.threads.append(threading.current_thread().name)
        self.computing -= 1
        return {"echo": batch.copy()}

    def padded_batch_size(self, count: int) -> int:
        return count


class CostlyLocalizer:
    """Runs sleep `seconds(batch_size)`: a device whose cost per image we choose."""

    def __init__(self, seconds) -> None:
        self.seconds = seconds

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        time.sleep(self.seconds(len(batch)))
        return {"echo": batch.copy()}

    def padded_batch_size(self, count: int) -> int:
        return count


def _model(localizer: object) -> LoadedModel:
    return LoadedModel("m", "1", localizer, (0, 0))  # type: ignore[arg-type]


def _image(value: float) -> np.ndarray:
    return np.full(SHAPE, value, np.float32)


def test_a_lone_request_runs_at_once_and_a_delay_is_opt_in() -> None:
    open_gate = GatedLocalizer()
    open_gate.gate.set()
    batcher = DynamicBatcher(max_batch_size=8, tune_batch_size=False)
    try:
        # Were it to wait for company as the first request of a batch used to, the only
        # company would never come: a 60 s delay shows it does not wait at all.
        result = batcher.submit(_model(open_gate), _image(1), None).result(timeout=10)
        assert result.batch_size == 1 and float(result.outputs["echo"].max()) == 1.0
    finally:
        batcher.stop()
    waiting = DynamicBatcher(max_batch_size=8, max_queue_delay=60.0, tune_batch_size=False)
    future = waiting.submit(_model(open_gate), _image(1), None)
    with pytest.raises(TimeoutError):
        future.result(timeout=0.3)  # an explicit delay still waits for company
    waiting.stop()  # stopping runs what is queued
    assert future.result(timeout=10).batch_size == 1


def test_requests_that_arrive_during_a_batch_run_together_next() -> None:
    localizer = GatedLocalizer()
    sizes: list[int] = []
    batcher = DynamicBatcher(
        max_batch_size=8, tune_batch_size=False, on_batch=lambda _m, _v, n: sizes.append(n)
    )
    try:
        first = batcher.submit(_model(localizer), _image(0), None)
        assert localizer.running.wait(10)  # the worker is busy with the first request alone
        rest = [batcher.submit(_model(localizer), _image(i), None) for i in range(1, 11)]
        localizer.gate.set()
        results = [f.result(timeout=10) for f in [first, *rest]]
    finally:
        batcher.stop()
    assert sizes == [1, 8, 2]  # the 10 waiting requests: one full batch, then the remainder
    assert [float(r.outputs["echo"].max()) for r in results] == list(range(11))


def test_call_runs_a_lone_request_on_the_callers_thread() -> None:
    localizer = GatedLocalizer()
    localizer.gate.set()
    batcher = DynamicBatcher(max_batch_size=8)
    try:
        result = batcher.call(_model(localizer), _image(3), None)
    finally:
        batcher.stop()
    assert localizer.threads == [threading.current_thread().name]
    assert result.batch_size == 1 and float(result.outputs["echo"].max()) == 3.0
    refusing = DynamicBatcher(max_queue_size=0)
    with pytest.raises(ResourceExhausted, match="queue is full"):
        refusing.call(_model(localizer), _image(3), None)
    refusing.stop()


def test_calls_while_a_batch_computes_queue_and_batch_one_at_a_time() -> None:
    localizer = GatedLocalizer()
    sizes: list[int] = []
    batcher = DynamicBatcher(
        max_batch_size=8, tune_batch_size=False, on_batch=lambda _m, _v, n: sizes.append(n)
    )
    results = {}

    def call(i: int) -> None:
        results[i] = batcher.call(_model(localizer), _image(i), None)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert localizer.running.wait(10)  # the first call computes on its own thread
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 7)]
    for t in others:
        t.start()
    while batcher.depth < 6:  # all six wait for the computing call to finish
        time.sleep(0.01)
    localizer.gate.set()
    for t in [first, *others]:
        t.join(10)
    batcher.stop()
    assert sizes == [1, 6] and localizer.most_computing == 1
    assert localizer.threads == [first.name, "dynamic-batcher"]
    assert {i: float(r.outputs["echo"].max()) for i, r in results.items()} == {
        i: float(i) for i in range(7)
    }


def test_tuner_settles_on_the_cheapest_size_per_image() -> None:
    tuner = BatchSizeTuner(8, explore_every=10)
    model = object.__new__(GatedLocalizer)
    assert tuner.sizes == (1, 2, 4, 8)
    per_image = {1: 1.0, 2: 1.1, 4: 1.3, 8: 1.6}  # a CPU: bigger batches cost more per image
    limits = []
    for _ in range(60):
        size = tuner.limit(model, SHAPE)  # as if plenty of requests were waiting
        limits.append(size)
        tuner.observe(model, SHAPE, size, per_image[size] * size)
    assert limits[:8] == [1, 1, 2, 2, 4, 4, 8, 8]  # each size: one warm-up run, one measured
    assert Counter(limits[8:]).most_common(1)[0][0] == 1
    assert set(limits[8:]) == {1, 2}  # only the neighbour is re-measured now and then
    assert tuner.per_image_seconds(model, SHAPE) == pytest.approx(per_image)


def test_tuner_is_not_fooled_by_one_lucky_run_nor_a_marginal_gain() -> None:
    tuner = BatchSizeTuner(8, explore_every=8)
    model = object.__new__(GatedLocalizer)
    # Size 2 is 5% cheaper per image (within the noise of a shared machine), and the first
    # measured run of size 4 was lucky (a quiet moment): neither is worth waiting for.
    per_image = {1: 1.0, 2: 0.95, 4: 1.3, 8: 1.6}
    lucky = {4: 0.3}
    limits = []
    for _ in range(80):
        size = tuner.limit(model, SHAPE)
        limits.append(size)
        if size in tuner.per_image_seconds(model, SHAPE) or size not in lucky:
            tuner.observe(model, SHAPE, size, per_image[size] * size)
        else:
            tuner.observe(model, SHAPE, size, per_image[size] * size)  # warm-up
            tuner.observe(model, SHAPE, size, lucky.pop(size) * size)
    assert Counter(limits[-40:]).most_common(1)[0][0] == 1


def test_tuner_uses_the_largest_batch_where_batching_pays() -> None:
    tuner = BatchSizeTuner(6)
    model = object.__new__(GatedLocalizer)
    assert tuner.sizes == (1, 2, 4, 6)
    limits = []
    for _ in range(40):
        size = tuner.limit(model, SHAPE)
        limits.append(size)
        tuner.observe(model, SHAPE, size, 1.0 + 0.1 * size)  # a GPU: a batch costs ~one image
    assert Counter(limits[8:]).most_common(1)[0][0] == 6


def test_tuner_follows_the_machine_when_the_best_size_changes() -> None:
    tuner = BatchSizeTuner(4, explore_every=4, window=3)
    model = object.__new__(GatedLocalizer)

    def run(per_image: dict[int, float], times: int) -> list[int]:
        limits = []
        for _ in range(times):
            size = tuner.limit(model, SHAPE)
            limits.append(size)
            tuner.observe(model, SHAPE, size, per_image[size] * size)
        return limits

    assert Counter(run({1: 1.0, 2: 1.2, 4: 1.5}, 30)[6:]).most_common(1)[0][0] == 1
    # The load changed (say another process left the GPU): batches of 2 now pay, and the
    # limit asked for between two measurements must follow the newest ones.
    assert Counter(run({1: 1.0, 2: 0.5, 4: 1.5}, 40)[-20:]).most_common(1)[0][0] == 2


def test_tuner_forgets_a_model_once_it_is_unloaded() -> None:
    tuner = BatchSizeTuner(8)
    model = object.__new__(GatedLocalizer)
    tuner.observe(model, SHAPE, 1, 0.1)
    assert len(tuner._costs) == 1
    del model
    assert len(tuner._costs) == 0


def test_batcher_under_load_stops_batching_when_batches_cost_more_per_image() -> None:
    # 10 ms per image alone, 40 ms per image in a batch of 4: batching would cost throughput.
    # (The contrast is wide so that sleeps overshooting on a busy machine cannot blur it.)
    localizer = CostlyLocalizer(lambda n: 0.01 * n * n)
    sizes: list[int] = []
    batcher = DynamicBatcher(max_batch_size=4, on_batch=lambda _m, _v, n: sizes.append(n))
    model = _model(localizer)
    try:
        for _ in range(16):  # waves of 4 concurrent requests
            futures = [batcher.submit(model, _image(1), None) for _ in range(4)]
            for future in futures:
                future.result(timeout=10)
    finally:
        batcher.stop()
    late = Counter(sizes[len(sizes) // 2 :])
    assert late.most_common(1)[0][0] == 1, sizes
    assert sum(sizes) == 64


class PaddingLocalizer(CostlyLocalizer):
    """Runs batches of 1 and 4 only, as a localizer with a session per shape does."""

    def __init__(self) -> None:
        super().__init__(lambda _n: 0.0)
        self.batches: list[np.ndarray] = []

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.batches.append(batch.copy())
        return super().run(batch)

    def padded_batch_size(self, count: int) -> int:
        return 1 if count == 1 else 4


def test_a_batch_is_padded_with_zero_images_to_the_localizers_size() -> None:
    localizer = PaddingLocalizer()
    sizes: list[int] = []
    batcher = DynamicBatcher(
        max_batch_size=3,
        max_queue_delay=60.0,  # the batch closes when its third request comes
        tune_batch_size=False,
        on_batch=lambda _m, _v, n: sizes.append(n),
    )
    try:
        futures = [batcher.submit(_model(localizer), _image(v), None) for v in (1, 2, 3)]
        results = [f.result(timeout=10) for f in futures]
    finally:
        batcher.stop()
    assert [b.shape for b in localizer.batches] == [(4, *SHAPE)]
    assert [float(b.max()) for b in localizer.batches[0]] == [1.0, 2.0, 3.0, 0.0]
    assert sizes == [3] and [r.batch_size for r in results] == [3, 3, 3]
    assert [float(r.outputs["echo"].max()) for r in results] == [1.0, 2.0, 3.0]


def test_a_request_after_stop_is_refused_instead_of_waiting_for_ever() -> None:
    localizer = GatedLocalizer()
    localizer.gate.set()
    batcher = DynamicBatcher(max_batch_size=4)
    model = _model(localizer)
    assert batcher.call(model, _image(1), None).batch_size == 1
    assert batcher.stop(timeout=5) is True  # nothing running: the worker ends at once
    outcomes: list[BaseException] = []

    def attempt(how) -> None:  # on a thread of its own: a bug here waits for ever
        try:
            how(model, _image(1), None)
        except BaseException as exc:
            outcomes.append(exc)

    for how in (batcher.call, batcher.submit):
        thread = threading.Thread(target=attempt, args=(how,), daemon=True)
        thread.start()
        thread.join(5)
        assert not thread.is_alive(), f"{how.__name__} after stop() waited instead of refusing"
    assert [type(e) for e in outcomes] == [Unavailable, Unavailable]
    assert "the inference service is shutting down; retry" in str(outcomes[0])


def test_stop_gives_up_on_a_run_that_does_not_return_after_its_timeout(caplog) -> None:
    localizer = GatedLocalizer()  # its gate stays closed: the run hangs (up to 10 s)
    batcher = DynamicBatcher(max_batch_size=4)
    pending = batcher.submit(_model(localizer), _image(1), None)
    assert localizer.running.wait(5)
    began = time.monotonic()
    assert batcher.stop(timeout=0.5) is False
    assert time.monotonic() - began < 3
    assert "still running a batch 0.5 s after the stop" in caplog.text
    localizer.gate.set()  # let it finish: the request still gets its answer
    assert pending.result(timeout=10).batch_size == 1
