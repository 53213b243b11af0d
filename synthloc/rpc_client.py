"""The client side of synthloc's gRPC services: channels, credentials, health, and status codes
turned back into the SynthlocError hierarchy, shared by the inference and synthesis clients.

A failed call raises the SynthlocError subclass that carries the call's status code (so a
script exits with the project's exit codes) with a message naming the server, the code and the
server's own explanation. The actual status code is kept on the exception as `grpc_code`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from synthloc.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    IntegrityError,
    InvalidInput,
    NotFound,
    ResourceExhausted,
    SynthlocError,
    Unauthenticated,
    Unavailable,
)

_ERRORS: dict[grpc.StatusCode, type[SynthlocError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.OUT_OF_RANGE: InvalidInput,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Unauthenticated,
    grpc.StatusCode.DATA_LOSS: IntegrityError,
}
_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}

T = TypeVar("T")


def status_code(value: int) -> grpc.StatusCode:
    """The StatusCode of a numeric code (as in synthloc.v1.ItemError); UNKNOWN if unheard of."""
    return _CODES_BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


def error_from_status(code: grpc.StatusCode, details: str, peer: str) -> SynthlocError:
    """The SynthlocError for a status a server answered; `peer` says who answered."""
    if code == grpc.StatusCode.UNAVAILABLE:
        message = f"{peer} is unreachable ({details}); check that it runs and the address is right"
    else:
        message = f"{peer} answered {code.name}: {details}"
    error = _ERRORS.get(code, SynthlocError)(message)
    error.grpc_code = code  # the real code, also for codes without a class of their own
    return error


def error_from_rpc(err: grpc.RpcError, peer: str) -> SynthlocError:
    """The SynthlocError for a failed call."""
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    return error_from_status(code, details or "no details", peer)


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{what}: {path}: no such file") from None
    except OSError as exc:
        raise InvalidInput(f"{what}: {path}: cannot read ({exc.strerror})") from None


@dataclass(frozen=True)
class ChannelSecurity:
    """How a client proves itself and checks the server: TLS, mutual TLS, a bearer token.

    TLS is on when `tls` is true or any TLS file is given: `tls_ca` verifies the server
    (default: the system's roots), `tls_cert` + `tls_key` present a client certificate. Plain
    paths and strings, so it pickles into DataLoader workers.
    """

    token: str | None = None
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidInput("mutual TLS needs both tls_cert and tls_key")

    @property
    def metadata(self) -> list[tuple[str, str]]:
        """Call metadata: the bearer token, if any."""
        return [("authorization", f"Bearer {self.token}")] if self.token else []

    def channel(self, address: str, options: list[tuple[str, Any]]) -> grpc.Channel:
        """A channel to `address` (any gRPC target), secure when TLS is on."""
        if not (self.tls or self.tls_ca is not None or self.tls_cert is not None):
            return grpc.insecure_channel(address, options=options)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(self.tls_ca, "tls_ca") if self.tls_ca else None,
            private_key=_read(self.tls_key, "tls_key") if self.tls_key else None,
            certificate_chain=_read(self.tls_cert, "tls_cert") if self.tls_cert else None,
        )
        return grpc.secure_channel(address, credentials, options=options)


class ServiceClient:
    """A channel to one synthloc service, with optional TLS, mutual TLS and a bearer token.

    `target` is host:port, several host:port separated by commas (balanced round-robin), or
    any gRPC name such as dns:///name:port. TLS is on when `tls` is true or any TLS file is
    given: `tls_ca` verifies the server (default: the system's roots), `tls_cert` + `tls_key`
    present a client certificate (mutual TLS). `timeout` bounds each unary call in seconds.
    """

    service_name = ""  # the name grpc.health.v1 knows the service by
    description = "the service"
    default_max_message_bytes = 64 << 20
    stub_class: Callable[[grpc.Channel], Any] | None = None  # the service's generated stub

    def __init__(
        self,
        target: str,
        token: str | None = None,
        tls_ca: Path | None = None,
        timeout: float = 60.0,
        *,
        tls: bool = False,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        if not target:
            raise InvalidInput("target: give the server as host:port")
        security = ChannelSecurity(token, tls, tls_ca, tls_cert, tls_key)
        limit = max_message_bytes or self.default_max_message_bytes
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
        ]
        address = target
        if "," in target and ":///" not in target and not target.startswith(("ipv4:", "ipv6:")):
            address = "ipv4:" + target
            options.append(("grpc.lb_policy_name", "round_robin"))
        self._channel = security.channel(address, options)
        self.target = target
        self.timeout = timeout
        self._metadata = security.metadata
        self._health = health_pb2_grpc.HealthStub(self._channel)
        stub_class = type(self).stub_class
        self._stub: Any = stub_class(self._channel) if stub_class is not None else None

    @property
    def peer(self) -> str:
        """Who the client talks to, for messages."""
        return f"{self.description} at {self.target}"

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def _unary(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.peer) from None

    def _streaming(
        self, method: Callable[..., Any], request: Any, timeout: float | None = None
    ) -> Iterator[Any]:
        """Iterate a response stream; leaving the loop early cancels the call."""
        call = method(request, timeout=timeout, metadata=self._metadata)
        try:
            yield from call
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.peer) from None
        finally:
            call.cancel()

    def health(self) -> str:
        """The service's grpc.health.v1 status: SERVING, NOT_SERVING or SERVICE_UNKNOWN."""
        request = health_pb2.HealthCheckRequest(service=self.service_name)
        reply = self._unary(self._health.Check, request)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Block until the service says SERVING; Unavailable if it does not within `timeout`."""
        deadline = time.monotonic() + timeout
        status = "no answer"
        while True:
            try:
                status = self.health()
                if status == "SERVING":
                    return
            except (Unavailable, DeadlineExceeded) as exc:
                status = str(exc)
            if time.monotonic() >= deadline:
                raise Unavailable(f"{self.peer} is not SERVING after {timeout:g} s ({status})")
            time.sleep(0.1)
