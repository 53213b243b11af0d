"""SynthSettings: the one configuration object of the synthesis service."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "SYNTHLOC_SYNTH_"


@dataclass(frozen=True)
class SynthSettings:
    """Every knob of a synthesis replica; env SYNTHLOC_SYNTH_<NAME> or `synthloc synth serve`."""

    library: Path = Path("train.json")
    """COCO file whose annotated objects and images the replica composes from."""
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 or [::] in containers."""
    port: int = 50051
    """gRPC port (0 picks a free one)."""
    metrics_port: int = 9101
    """Prometheus /metrics port (0 picks a free one; -1 disables)."""
    workers: int = field(default_factory=lambda: max(os.cpu_count() or 1, 1))
    """Composition processes (one per core keeps the GIL out of the way)."""
    annotated_fraction: float = 1.0
    """Keep this random fraction of each image's annotations (simulates partial annotation)."""
    fraction_seed: int = 0
    """Seed that picks which annotations the fraction keeps."""
    include_truncated: bool = False
    """Also cut objects that touch the image border."""
    max_canvas_pixels: int = 4096 * 4096
    """Largest canvas (height x width) a recipe may ask for."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message sent or received; batches that would exceed it are refused."""
    max_inflight_batches: int = 4
    """Batches composed ahead of a stream's consumer; bounds memory for slow trainers."""
    shared_memory_slots: int = 8
    """Batches each worker can hand over in shared memory at once (0: all through a pipe)."""
    rpc_threads: int = 64
    """Threads serving RPCs; each open stream holds one."""
    grace_seconds: float = 10.0
    """On SIGTERM, time given to open streams before they are cut."""
    background_seed: int = 0
    """Seed of the background cleaning (noise fill)."""
    tls_cert: Path | None = None
    """Server certificate (PEM); with tls_key, the port speaks TLS."""
    tls_key: Path | None = None
    """Server private key (PEM)."""
    tls_client_ca: Path | None = None
    """CA bundle (PEM) for client certificates; set it to require mutual TLS."""
    auth_token: str = ""
    """When set, every call needs metadata `authorization: Bearer <token>` (health stays open)."""
