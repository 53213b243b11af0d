"""Prometheus metrics of a synthesis replica, in a registry of its own (one per server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

_COMPOSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class SynthMetrics:
    """Images and bytes streamed, compose time, active streams, errors by code."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.images = Counter(
            "synthloc_synth_images_streamed", "Samples sent to clients.", registry=self.registry
        )
        self.bytes = Counter(
            "synthloc_synth_bytes_streamed",
            "Serialized batch bytes sent to clients.",
            registry=self.registry,
        )
        self.compose_seconds = Histogram(
            "synthloc_synth_compose_seconds",
            "Composition time per sample (encoding included).",
            buckets=_COMPOSE_BUCKETS,
            registry=self.registry,
        )
        self.active_streams = Gauge(
            "synthloc_synth_active_streams",
            "StreamBatches calls in progress.",
            registry=self.registry,
        )
        self.inflight_batches = Gauge(
            "synthloc_synth_inflight_batches",
            "Batches queued or being composed.",
            registry=self.registry,
        )
        self.errors = Counter(
            "synthloc_synth_errors",
            "Failed calls by method and gRPC status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self._transfers: Callable[[], Mapping[str, int]] = dict  # none until an engine is watched
        self.registry.register(_TransferCollector(self._transfer_counts))

    def watch_transfers(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Export the engine's count of batches by how they left the workers."""
        self._transfers = counts

    def _transfer_counts(self) -> Mapping[str, int]:
        return self._transfers()

    def record_error(self, method: str, code: object) -> None:
        """Count one failed call (code: a grpc.StatusCode)."""
        name = getattr(code, "name", str(code))
        self.errors.labels(method=method.rsplit("/", 1)[-1], code=name).inc()


class _TransferCollector:
    """synthloc_synth_batch_transfers_total{path}, read from the engine's counts at scrape."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "synthloc_synth_batch_transfers",
            "Batches handed from the workers to the serving process: in shared memory, or "
            "through the pipe when no slot was free.",
            labels=["path"],
        )
        for path, count in sorted(self._counts().items()):
            family.add_metric([path], count)
        yield family
