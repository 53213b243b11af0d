"""One place that turns exceptions into gRPC status codes, as a server interceptor.

SynthlocError subclasses carry their code and a message meant for the caller. Anything else
is a server fault: the client gets INTERNAL with a generic message and a request id, and the
traceback goes to the log only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from synthloc.errors import SynthlocError

log = logging.getLogger(__name__)


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, SynthlocError):
        context.abort(exc.grpc_code, str(exc))
    incident = uuid.uuid4().hex[:12]
    log.exception("internal error in %s (incident %s)", method, incident)
    context.abort(grpc.StatusCode.INTERNAL, f"internal server error (incident {incident})")


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps exceptions raised by unary and server-streaming handlers to status codes.

    `on_error(method, code)` is called for every failed call (e.g. to count errors by code).
    """

    def __init__(self, on_error: Callable[[str, grpc.StatusCode], None] | None = None) -> None:
        self._on_error = on_error

    def _report(self, method: str, exc: BaseException) -> None:
        if self._on_error is not None:
            code = exc.grpc_code if isinstance(exc, SynthlocError) else grpc.StatusCode.INTERNAL
            self._on_error(method, code)

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return inner_uu(request, context)
                except Exception as exc:
                    if _is_abort(exc):
                        raise
                    self._report(method, exc)
                    _abort(context, exc, method)

            return handler._replace(unary_unary=unary_unary)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from inner_us(request, context)
                except Exception as exc:
                    if _is_abort(exc):
                        raise
                    self._report(method, exc)
                    _abort(context, exc, method)

            return handler._replace(unary_stream=unary_stream)
        return handler


def _is_abort(exc: BaseException) -> bool:
    # context.abort() ends a call by raising a bare Exception(); it must pass through as is.
    return type(exc) is Exception and not exc.args
