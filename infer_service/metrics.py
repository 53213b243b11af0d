"""Prometheus metrics of an inference replica, in a registry of its own (one per server)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class InferMetrics:
    """Requests by outcome; request, queue and compute time; batch sizes; queue; models."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "synthloc_infer_requests",
            "Localize requests by outcome.",
            ["model", "version", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "synthloc_infer_request_seconds",
            "Time from request to response.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "synthloc_infer_queue_seconds",
            "Time spent waiting for a batch.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.compute_seconds = Histogram(
            "synthloc_infer_compute_seconds",
            "ONNX Runtime time of the batch a request ran in.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            "synthloc_infer_batch_size",
            "Requests per batch run.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.queue_depth = Gauge(
            "synthloc_infer_queue_depth", "Requests waiting for a batch.", registry=r
        )
        self.models = Gauge(
            "synthloc_infer_model_loaded",
            "1 for every loaded model version, labelled with its provider.",
            ["model", "version", "provider"],
            registry=r,
        )

    def show_models(self, models: list) -> None:
        """Make the loaded-model gauge list exactly these models."""
        self.models.clear()
        for m in models:
            self.models.labels(model=m.name, version=m.version, provider=m.provider).set(1)
