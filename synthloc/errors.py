"""The one exception hierarchy of synthloc.

Each class carries the gRPC status code a server answers with and the exit code the CLI ends
with, so that the translation happens in one place per transport. Messages are written for the
person who has to fix the input: they name the file or field and say what is expected.
"""

from __future__ import annotations

import grpc


class SynthlocError(Exception):
    """Base class; unexpected failures map to INTERNAL / exit code 1."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    exit_code: int = 1


class InvalidInput(SynthlocError):
    """The caller's input is malformed or inconsistent (a file, a field, a flag)."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    exit_code = 2


class NotFound(SynthlocError):
    """A named thing (file, model, version, class) does not exist."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    exit_code = 2


class FailedPrecondition(SynthlocError):
    """The request is well formed but the system is not in a state to serve it."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    exit_code = 2


class ResourceExhausted(SynthlocError):
    """A configured limit (queue, message size, pixels) would be exceeded."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    exit_code = 2


class Unavailable(SynthlocError):
    """A remote peer (package index, server) could not be reached."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    exit_code = 3


class IntegrityError(SynthlocError):
    """Downloaded or stored bytes are not what they must be (checksum, broken archive)."""

    grpc_code = grpc.StatusCode.DATA_LOSS
    exit_code = 4


class DeadlineExceeded(SynthlocError):
    """The caller's deadline passed before the work could be done."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    exit_code = 3


class Unauthenticated(SynthlocError):
    """The call carries no valid credentials."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    exit_code = 2
