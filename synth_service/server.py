"""A synthesis replica: gRPC server, health, reflection, TLS, auth, metrics endpoint, graceful
shutdown."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from synth_service.engine import SynthesisEngine
from synth_service.metrics import SynthMetrics
from synth_service.servicer import SERVICE_NAME, SynthesisServicer, generic_handler
from synth_service.settings import SynthSettings
from synthloc.grpc_errors import ErrorInterceptor
from synthloc.memory import keep_freed_memory
from synthloc.serving import (
    bind,
    interceptors,
    run_until_signalled,
    server_credentials,
    server_options,
)

log = logging.getLogger(__name__)


class SynthServer:
    """Owns the gRPC server, the engine and the metrics endpoint of one replica."""

    def __init__(self, settings: SynthSettings, engine: SynthesisEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = SynthMetrics()
        self.metrics.inflight_batches.set_function(lambda: engine.inflight_batches)
        self.metrics.watch_transfers(lambda: dict(engine.transfers))
        self.health = health.HealthServicer()
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        limit = settings.max_message_bytes
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=settings.rpc_threads, thread_name_prefix="synth-rpc"),
            interceptors=interceptors(
                settings.auth_token, ErrorInterceptor(self.metrics.record_error)
            ),
            options=server_options(limit),
        )
        self.server.add_generic_rpc_handlers(
            (generic_handler(SynthesisServicer(engine, self.metrics)),)
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port = bind(
            self.server,
            f"{settings.host}:{settings.port}",
            server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca),
        )
        self.metrics_port: int | None = None
        self._metrics_httpd = None

    def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def start(self) -> None:
        """Serve: start RPCs and metrics, warm the workers, then report SERVING."""
        self.server.start()
        if self.settings.metrics_port >= 0:
            self._metrics_httpd, _ = start_http_server(
                self.settings.metrics_port, addr=self.settings.host, registry=self.metrics.registry
            )
            self.metrics_port = self._metrics_httpd.server_port
        self.engine.warm_up()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "synthesis service on %s:%d (metrics on port %s), %d objects, library %s",
            self.settings.host,
            self.port,
            self.metrics_port,
            len(self.engine.state.library.objects),
            self.engine.state.library_hash,
        )
        library = self.engine.state.library
        if library.context.anchor:
            log.info("placement context: %s", library.context.describe(library.class_names))

    def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, refuse new calls, give open streams `grace` seconds, clean up."""
        self.health.enter_graceful_shutdown()
        grace = self.settings.grace_seconds if grace is None else grace
        self.server.stop(grace).wait()
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()
            self._metrics_httpd.server_close()
        self.engine.close()


def create_server(settings: SynthSettings) -> tuple[SynthServer, int]:
    """Build the replica (library, backgrounds, workers) and bind its port; not started yet."""
    keep_freed_memory()  # the serving process receives and sends every batch
    engine = SynthesisEngine.from_settings(settings)
    try:
        server = SynthServer(settings, engine)
    except BaseException:
        engine.close()
        raise
    return server, server.port


def serve(settings: SynthSettings) -> int:
    """Run until SIGTERM or SIGINT, then drain within the grace period and return 0."""
    server, _ = create_server(settings)
    return run_until_signalled(server, settings.grace_seconds)
