"""An inference replica: gRPC (LocalizationService + KServe v2), health, reflection, TLS,
auth, metrics endpoint, repository polling and graceful shutdown."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from infer_service.batcher import DynamicBatcher
from infer_service.engine import LocalizationEngine
from infer_service.engine_process import EngineLink, RemoteBatcher
from infer_service.kserve import SERVICE_NAME as KSERVE_SERVICE
from infer_service.kserve import KServeServicer, add_kserve_to_server
from infer_service.localizer import batch_buckets
from infer_service.metrics import InferMetrics
from infer_service.repository import ModelRepository, warm_sides
from infer_service.servicer import SERVICE_NAME, LocalizationServicer
from infer_service.settings import InferSettings
from synthloc.errors import FailedPrecondition
from synthloc.grpc_errors import ErrorInterceptor
from synthloc.memory import keep_freed_memory
from synthloc.serving import (
    bind,
    interceptors,
    run_until_signalled,
    server_credentials,
    server_options,
)
from synthloc.v1 import localization_pb2_grpc

log = logging.getLogger(__name__)


class InferServer:
    """Owns the gRPC server, repository, batcher, poller and metrics endpoint."""

    def __init__(self, settings: InferSettings, engine: EngineLink | None = None) -> None:
        self.settings = settings
        self.metrics = InferMetrics()
        self.batcher: DynamicBatcher | RemoteBatcher
        if engine is not None:  # the engine process batches and runs; it has the metrics
            self.batcher = RemoteBatcher(engine, settings.max_queue_size)
            self.repository = load_repository(settings, engine, self.batcher.served_versions())
        else:
            self.repository = load_repository(settings)
            self.batcher = new_batcher(settings, self.metrics)
        self.metrics.show_models(self.repository.list())
        self.engine = LocalizationEngine(self.repository, self.batcher, settings.default_model)
        self.health = health.HealthServicer()
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        limit = settings.max_message_bytes
        self.server = grpc.server(
            ThreadPoolExecutor(settings.rpc_threads, thread_name_prefix="infer-rpc"),
            interceptors=interceptors(settings.auth_token, ErrorInterceptor()),
            options=server_options(limit, settings.reuse_port),
        )
        servicer = LocalizationServicer(
            self.engine, self.metrics, settings.max_pixels, settings.max_batch_size
        )
        localization_pb2_grpc.add_LocalizationServiceServicer_to_server(servicer, self.server)
        names = [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME]
        add_kserve_to_server(
            KServeServicer(self.repository, self.batcher, self._ready), self.server
        )
        names.append(KSERVE_SERVICE)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(names, self.server)
        try:
            self.port = bind(
                self.server,
                f"{settings.host}:{settings.port}",
                server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca),
            )
        except BaseException:  # a taken port or a bad TLS file: leave no batcher threads behind
            self.batcher.stop()
            raise
        self.metrics_port: int | None = None
        self._httpd = None
        self._stop_polling = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="repository-poll", daemon=True)

    def _ready(self) -> bool:
        return not self._stop_polling.is_set() and bool(self.repository.list())

    def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def _poll(self) -> None:
        batcher = self.batcher
        served = batcher.served_versions if isinstance(batcher, RemoteBatcher) else None
        poll_repository(
            self.repository, self.metrics, self.settings.poll_seconds, self._stop_polling, served
        )

    def start(self, metrics_host: str | None = None, announce: bool = True) -> None:
        """Serve, then report SERVING (models are loaded and warmed by now). Metrics listen on
        `metrics_host` (default: the gRPC host); `announce` logs the line that says the
        service is up (a replica of `--processes` leaves that to its supervisor)."""
        self.server.start()
        if self.settings.metrics_port >= 0:
            self._httpd, _ = start_http_server(
                self.settings.metrics_port,
                addr=metrics_host or self.settings.host,
                registry=self.metrics.registry,
            )
            self.metrics_port = self._httpd.server_port
        if self.settings.poll_seconds > 0:
            self._poller.start()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        models = ", ".join(f"{m.name}/{m.version} on {m.provider}" for m in self.repository.list())
        if announce:
            log.info(
                "inference service on %s:%d (metrics on port %s): %s",
                self.settings.host,
                self.port,
                self.metrics_port,
                models,
            )
        else:
            log.info("serving on port %d: %s", self.port, models)

    def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, refuse new calls, finish in-flight ones within the grace."""
        self.health.enter_graceful_shutdown()
        self._stop_polling.set()
        self.server.stop(self.settings.grace_seconds if grace is None else grace).wait()
        self.batcher.stop(self.settings.grace_seconds)  # bounded: a hung run must not hang us
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def load_repository(
    settings: InferSettings,
    engine: EngineLink | None = None,
    served: dict[str, list[str]] | None = None,
) -> ModelRepository:
    """The model repository, scanned: every loadable version loaded and warmed. With an
    `engine` process running the models, only the versions it `served`, each loaded on the
    CPU, unwarmed, for its model card and input shapes (the engine's provider is the one
    reported)."""
    repository = ModelRepository(
        settings.models,
        "cpu" if engine else settings.device,
        settings.keep_versions,
        settings.require_gpu and engine is None,
        settings.onnx_threads,
        "off" if engine else settings.pad_batches,
        batch_buckets(settings.max_batch_size),
        settings.max_sessions,
        () if engine else warm_sides(settings.warm_sizes),
        engine.provider if engine else "",
    )
    changes = repository.scan(served)
    if not repository.list():
        raise FailedPrecondition(
            f"{settings.models}: no loadable model (expected "
            "<model>/<version>/model.onnx exported by synthloc)"
        )
    for change in changes:
        log.info("%s", change)
    return repository


def new_batcher(settings: InferSettings, metrics: InferMetrics) -> DynamicBatcher:
    """The dynamic batcher `settings` ask for, its batch sizes and queue depth in `metrics`."""
    batcher = DynamicBatcher(
        settings.max_batch_size,
        settings.max_queue_delay_ms / 1000,
        settings.max_queue_size,
        on_batch=lambda model, _v, n: metrics.batch_size.labels(model).observe(n),
        tune_batch_size=settings.tune_batch_size,
    )
    metrics.queue_depth.set_function(lambda: batcher.depth)
    return batcher


def poll_repository(
    repository: ModelRepository,
    metrics: InferMetrics,
    every: float,
    stop: threading.Event,
    served: Callable[[], dict[str, list[str]]] | None = None,
) -> None:
    """Rescan every `every` seconds until `stop` (never if `every` is 0), keeping only the
    versions `served()` names when given (a replica: what its engine has loaded)."""
    while every > 0 and not stop.wait(every):
        try:
            for change in repository.scan(served() if served else None):
                log.info("%s", change)
            metrics.show_models(repository.list())
        except Exception:  # the poller must outlive any one bad scan
            log.exception("repository scan failed; serving the previous models")


def create_server(
    settings: InferSettings, engine: EngineLink | None = None
) -> tuple[InferServer, int]:
    """Load the repository and bind the port; not started yet."""
    keep_freed_memory()  # every request allocates and drops buffers of a MiB or more
    server = InferServer(settings, engine)
    return server, server.port


def serve(settings: InferSettings) -> int:
    """Run until SIGTERM or SIGINT, then drain and return 0."""
    if settings.processes != 1 or settings.engine_process:  # a supervisor (refuses < 1)
        from infer_service.processes import serve_processes

        return serve_processes(settings)
    server, _ = create_server(settings)
    return run_until_signalled(server, settings.grace_seconds)
