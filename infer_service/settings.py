"""InferSettings: the one configuration object of the inference service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "SYNTHLOC_INFER_"


@dataclass(frozen=True)
class InferSettings:
    """Every knob of an inference replica; env SYNTHLOC_INFER_<NAME> or `synthloc infer serve`."""

    models: Path = Path("models")
    """Model repository: ROOT/<model>/<version>/model.onnx."""
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 or [::] in containers."""
    port: int = 8001
    """gRPC port for LocalizationService and the KServe v2 protocol (0 picks a free one)."""
    processes: int = 1
    """Server processes sharing the port (Linux): above 1, a supervisor runs that many
    replicas, each with its own models and sessions (GPU memory too), and one metrics endpoint
    that adds up theirs. For hosts where one Python process cannot keep the GPU busy."""
    engine_process: bool = False
    """With processes: one more process owns the models' sessions and one batcher, and the
    replicas hand it their prepared images, so batches form across all of them on one GPU
    context (infer_service.engine_process). For GPU hosts, where it lets batches grow with
    the whole load; on a CPU it only adds a hop."""
    reuse_port: bool = False
    """Let several inference server processes listen on this port (SO_REUSEPORT): the kernel
    spreads connections over them. Each needs its own metrics_port (or -1). Off, a port that
    is taken fails the start."""
    metrics_port: int = 8002
    """Prometheus /metrics port (0 picks a free one; -1 disables)."""
    device: str = "auto"
    """auto (CUDA when ONNX Runtime can use it, else CPU), cuda or cpu."""
    require_gpu: bool = False
    """Refuse to start unless every model runs on the CUDA provider."""
    onnx_threads: int = 0
    """ONNX Runtime threads per run (0: its default, one per physical core of the host; in a
    container with a CPU limit, set the limit)."""
    max_batch_size: int = 8
    """Largest batch the dynamic batcher forms."""
    max_queue_delay_ms: float = 0.0
    """How long the first request of a batch waits for company (0: never; a free worker takes
    what is queued at once, so batches still form under load)."""
    pad_batches: str = "auto"
    """auto (on the CUDA provider), on or off: pad every batch with zero images to a power of
    two up to max_batch_size and run each input shape on its own ONNX Runtime session. The
    CUDA provider re-plans its convolutions whenever the input shape changes (infer_service.
    sessions); on a CPU this only adds the padding's work."""
    max_sessions: int = 16
    """With pad_batches, sessions kept per model version (one per batch and image shape);
    the least recently used goes beyond it."""
    warm_sizes: str = "256"
    """Image sides (pixels, comma-separated) every loaded model runs once at each batch size
    before serving, so the first requests of those sizes pay no planning (~0.3 s per shape
    on a GPU)."""
    tune_batch_size: bool = True
    """Form batches no larger than the size measured cheapest per image (on CPUs often 1)."""
    max_queue_size: int = 64
    """Requests waiting beyond this are refused with RESOURCE_EXHAUSTED."""
    max_pixels: int = 64 * 1024 * 1024
    """Largest image (height x width) accepted."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message received or sent."""
    poll_seconds: float = 10.0
    """How often the repository is scanned for new or removed versions (0 = never)."""
    keep_versions: int = 2
    """Version policy: serve the newest N versions of each model."""
    default_model: str = ""
    """Model used when a request names none (empty: the first in name order)."""
    tls_cert: Path | None = None
    """Server certificate (PEM); with tls_key, the port speaks TLS."""
    tls_key: Path | None = None
    """Server private key (PEM)."""
    tls_client_ca: Path | None = None
    """CA bundle (PEM) for client certificates; set it to require mutual TLS."""
    auth_token: str = ""
    """When set, every call needs metadata `authorization: Bearer <token>`."""
    rpc_threads: int = 32
    """Threads serving RPCs."""
    grace_seconds: float = 10.0
    """On SIGTERM, time in-flight requests get to finish."""
