"""LocalizationClient: a small typed client for the inference service."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from synthloc.errors import NotFound
from synthloc.v1 import localization_pb2, localization_pb2_grpc


@dataclass(frozen=True)
class Found:
    """One localized object, in the original image's pixels."""

    class_name: str
    score: float
    box: tuple[float, float, float, float]  # x, y, width, height
    point: tuple[float, float]


@dataclass(frozen=True)
class LocalizeResult:
    """The service's answer for one image."""

    detections: list[Found]
    model: str
    version: str
    provider: str
    height: int
    width: int
    total_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self, title: str) -> str:
        """Human-readable summary."""
        lines = [
            f"{title}: {len(self.detections)} objects ({self.model}/{self.version} on "
            f"{self.provider}, {self.total_ms:.1f} ms)"
        ]
        lines += [
            f"  {d.class_name:<14} {d.score:5.2f}  x={d.box[0]:7.1f} y={d.box[1]:7.1f} "
            f"w={d.box[2]:6.1f} h={d.box[3]:6.1f}"
            for d in self.detections
        ]
        return "\n".join(lines)


class LocalizationClient:
    """Calls LocalizationService at `target` (host:port), optionally with TLS and a token."""

    def __init__(
        self,
        target: str,
        token: str | None = None,
        tls_ca: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        options = [
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20),
        ]
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=tls_ca.read_bytes())
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = localization_pb2_grpc.LocalizationServiceStub(self._channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self.timeout = timeout

    def __enter__(self) -> LocalizationClient:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def localize_bytes(
        self, data: bytes, model: str = "", version: str = "", score_threshold: float | None = None
    ) -> LocalizeResult:
        """Localize objects in an encoded image (PNG, JPEG, TIFF or DICOM bytes)."""
        request = localization_pb2.LocalizeRequest(
            encoded_image=data, model_name=model, model_version=version
        )
        if score_threshold is not None:
            request.score_threshold = score_threshold
        reply = self._stub.Localize(request, timeout=self.timeout, metadata=self._metadata)
        return LocalizeResult(
            detections=[
                Found(
                    d.class_name,
                    d.score,
                    (d.box.x, d.box.y, d.box.width, d.box.height),
                    (d.point.x, d.point.y),
                )
                for d in reply.detections
            ],
            model=reply.model_name,
            version=reply.model_version,
            provider=reply.provider,
            height=reply.image_height,
            width=reply.image_width,
            total_ms=reply.timings.total_ms,
        )

    def localize_file(
        self, path: Path, model: str = "", version: str = "", score_threshold: float | None = None
    ) -> LocalizeResult:
        """Localize objects in an image file."""
        if not path.is_file():
            raise NotFound(f"{path}: no such file")
        return self.localize_bytes(path.read_bytes(), model, version, score_threshold)

    def list_models(self) -> localization_pb2.ListModelsResponse:
        """What the service serves."""
        return self._stub.ListModels(
            localization_pb2.ListModelsRequest(), timeout=self.timeout, metadata=self._metadata
        )
