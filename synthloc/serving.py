"""The server side shared by synthloc's gRPC services: TLS from files, bearer tokens (health
checks stay open for probes), and running until SIGTERM with a graceful drain."""

from __future__ import annotations

import hmac
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import grpc

from synthloc.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)  # Kubernetes gRPC probes send no metadata


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without `authorization: Bearer <token>` with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(OPEN_PREFIXES):
            return continuation(details)
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(sent).encode(), self._expected):
            return continuation(details)
        return _refusal(continuation(details))


def _refusal(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
    if handler is None:
        return None
    message = "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'"

    def deny(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


def server_credentials(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> grpc.ServerCredentials | None:
    """TLS from PEM files (mutual TLS when client_ca is set); None when no file is given."""
    if cert is None and key is None:
        if client_ca is not None:
            raise InvalidInput("tls_client_ca needs tls_cert and tls_key too")
        return None
    if cert is None or key is None:
        raise InvalidInput("TLS needs both tls_cert and tls_key")
    try:
        pair = (key.read_bytes(), cert.read_bytes())
        ca = client_ca.read_bytes() if client_ca else None
    except OSError as exc:
        raise InvalidInput(f"cannot read a TLS file: {exc}") from exc
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )


def server_options(max_message_bytes: int, reuse_port: bool = False) -> list[tuple[str, int]]:
    """gRPC server options: the message limit both ways, and SO_REUSEPORT only when asked.

    gRPC sets SO_REUSEPORT by default, so a second server started on a port that one of ours
    holds would bind without error and silently take a share of its connections; with it off
    the second fails at bind. `reuse_port` turns it back on for processes meant to share a
    port (the kernel spreads connections over every process listening with it)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.so_reuseport", int(reuse_port)),
    ]


def bind(server: grpc.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Add the listening port (TLS when credentials are given); Unavailable if it cannot bind."""
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc: "Failed to bind to address ..."
        port = 0
    if port == 0:
        raise Unavailable(
            f"cannot listen on {address}: another process holds that port, or this host has no "
            "such address (choose another port, or port 0 for a free one)"
        )
    return port


def interceptors(token: str, errors: grpc.ServerInterceptor) -> list[grpc.ServerInterceptor]:
    """The token check first when a token is set, so refused calls never reach the service."""
    return [BearerTokenInterceptor(token), errors] if token else [errors]


class Replica(Protocol):
    """What run_until_signalled needs of a server."""

    def start(self) -> None: ...

    def stop(self, grace: float | None = None) -> None: ...


def run_until_signalled(replica: Replica, grace_seconds: float) -> int:
    """Start, serve until SIGTERM or SIGINT, then drain within the grace period; returns 0."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    replica.start()
    wait_for(stop)
    log.info("draining (grace %.1f s)", grace_seconds)
    replica.stop()
    log.info("stopped")
    return 0


def wait_for(event: threading.Event) -> None:
    """Wait for `event` in one-second slices. A Python signal handler runs only when the main
    thread runs Python code, and the kernel may deliver SIGTERM to any thread of the process
    that does not block it (ONNX Runtime's or gRPC's, say): an untimed wait could then sleep
    through it."""
    while not event.wait(1.0):
        pass
