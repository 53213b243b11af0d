"""The model repository: ROOT/<model>/<version>/model.onnx, loaded, warmed and hot-swapped.

A scan loads every version it has not seen (newest first, keeping `keep_versions` per model),
warms it, and only then swaps the new set in with one assignment: a request sees either the
old set or the new one, never a half-loaded model. A file that fails to load is logged and
skipped while older versions keep serving; it is retried when it changes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from infer_service.localizer import OnnxLocalizer, bucket
from synthloc.errors import FailedPrecondition, NotFound, SynthlocError

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
PAD_BATCHES = ("auto", "on", "off")


@dataclass(frozen=True)
class LoadedModel:
    """One served model version."""

    name: str
    version: str
    localizer: OnnxLocalizer
    stamp: tuple[int, int]  # (mtime_ns, size) of the file it was loaded from
    served_on: str = ""  # where an engine process runs it (--engine-process), if not here

    @property
    def provider(self) -> str:
        """The execution provider its requests run on."""
        return self.served_on or self.localizer.provider


@functools.cache
def cuda_usable() -> bool:
    """Whether ONNX Runtime can really run on CUDA here, probed once with a one-node model.

    onnxruntime-gpu lists CUDAExecutionProvider even where the CUDA and cuDNN libraries are
    missing, and then falls back to the CPU with an error in the log; asking first keeps
    "auto" quiet and honest.
    """
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    preload_cuda_libraries()
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "probe",
            [x],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
    )
    ort.set_default_logger_severity(4)  # the probe's failure is expected, not news
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
        return session.get_providers()[0] == "CUDAExecutionProvider"
    except Exception:  # any failure to build a CUDA session means: not usable
        return False
    finally:
        ort.set_default_logger_severity(2)


@functools.cache
def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from pip's nvidia-* packages installed beside onnxruntime-gpu.

    Without this, onnxruntime-gpu finds them only on the loader's path (a CUDA base image,
    LD_LIBRARY_PATH). onnxruntime.preload_dlls looks in those packages first, then on the
    path; where neither has them it prints what it could not load, which goes to the debug
    log: the CUDA probe then reports the provider unusable, as it is.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:  # onnxruntime before 1.21, or the CPU-only package
        return
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        try:
            preload()
        except Exception as exc:  # a failed preload only means the libraries are elsewhere
            print(exc)
    missed = report.getvalue().strip().splitlines()
    if missed:
        log.debug("onnxruntime.preload_dlls: %s", " | ".join(missed))


def providers_for(device: str) -> list:
    """ONNX Runtime providers to ask for: CUDA first when wanted and usable, CPU always."""
    cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})
    if device == "cuda":
        preload_cuda_libraries()
    if device == "cuda" or (device == "auto" and cuda_usable()):
        return [cuda, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int = 0) -> ort.SessionOptions:
    """Serving options. ONNX Runtime's worker threads sleep instead of spinning between runs,
    which on a small machine would take the cores that decode and answer the next requests.
    `threads` 0 keeps ONNX Runtime's own choice: one thread per physical core of the host, each
    pinned to its core. In a container with a CPU limit below the host's cores, set it to the
    limit. (Naming 2 threads, which leaves them unpinned, measured slower inside the service on
    a shared 2-core machine: 18.3 ms per 512x512 run against 15.3 ms.)"""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = max(threads, 0)
    return options


def warm_sides(text: str) -> tuple[int, ...]:
    """The `warm_sizes` setting ("256,512") as image sides in pixels."""
    try:
        sides = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sides = ()
    if not sides or min(sides) < 1:
        raise FailedPrecondition(
            "warm_sizes must be image sides in pixels separated by commas, e.g. 256,512 "
            f"(flag --warm-sizes, env SYNTHLOC_INFER_WARM_SIZES), got {text!r}"
        )
    return sides


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


class ModelRepository:
    """Thread-safe view of the loaded models, refreshed by scan()."""

    def __init__(
        self,
        root: Path,
        device: str = "auto",
        keep_versions: int = 2,
        require_gpu: bool = False,
        threads: int = 0,
        pad_batches: str = "auto",
        batch_sizes: tuple[int, ...] = (1, 2, 4, 8),
        max_sessions: int = 16,
        warm_sides: tuple[int, ...] = (256,),
        served_on: str = "",
    ) -> None:
        if not root.is_dir():
            raise NotFound(
                f"{root}: no such model repository (expected ROOT/<model>/<version>/{MODEL_FILE})"
            )
        self.root, self.device = root, device
        self.keep_versions, self.require_gpu = max(keep_versions, 1), require_gpu
        self.threads = threads
        if pad_batches not in PAD_BATCHES:
            raise FailedPrecondition(
                f"pad_batches must be one of {', '.join(PAD_BATCHES)} (flag --pad-batches, "
                f"env SYNTHLOC_INFER_PAD_BATCHES), got {pad_batches!r}"
            )
        if max_sessions < 1:
            raise FailedPrecondition(
                f"max_sessions must be at least 1 (flag --max-sessions), got {max_sessions}"
            )
        self.pad_batches, self.batch_sizes = pad_batches, batch_sizes
        self.max_sessions, self.warm_sides = max_sessions, warm_sides
        self.served_on = served_on
        self._models: dict[str, dict[str, LoadedModel]] = {}
        self._failed: dict[Path, tuple[int, int]] = {}
        self._lock = threading.Lock()  # one scan at a time; readers never wait

    def scan(self, served: dict[str, list[str]] | None = None) -> list[str]:
        """Load new versions, drop removed or surplus ones; return what changed (for logs).
        `served`: only these versions of each model (what an engine process runs), so that
        a replica never offers a version before its engine has loaded it."""
        with self._lock:
            current = self._models
            fresh: dict[str, dict[str, LoadedModel]] = {}
            changes = []
            for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
                versions = sorted(
                    (v for v in model_dir.iterdir() if (v / MODEL_FILE).is_file()),
                    key=lambda v: _version_key(v.name),
                    reverse=True,
                )
                kept: dict[str, LoadedModel] = {}
                for version_dir in versions:
                    if len(kept) == self.keep_versions:
                        break
                    if served is not None and version_dir.name not in served.get(
                        model_dir.name, ()
                    ):
                        continue
                    loaded = self._load(model_dir.name, version_dir, current)
                    if loaded is not None:
                        if current.get(model_dir.name, {}).get(loaded.version) is not loaded:
                            sizes = loaded.localizer.batch_sizes
                            fixed = f", a session per shape, batches of {sizes}" if sizes else ""
                            changes.append(
                                f"loaded {loaded.name}/{loaded.version} on {loaded.provider}{fixed}"
                            )
                        kept[loaded.version] = loaded
                if kept:
                    fresh[model_dir.name] = kept
            for name, versions_now in current.items():
                for version in versions_now:
                    if version not in fresh.get(name, {}):
                        changes.append(f"unloaded {name}/{version}")
            self._models = fresh  # the atomic swap
            return changes

    def _load(self, name: str, version_dir: Path, current: dict) -> LoadedModel | None:
        path = version_dir / MODEL_FILE
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        old = current.get(name, {}).get(version_dir.name)
        if old is not None and old.stamp == stamp:
            return old
        if self._failed.get(path) == stamp:
            return None  # already reported; retried once the file changes
        try:
            localizer = OnnxLocalizer(
                path, providers_for(self.device), session_options(self.threads)
            )
            if self.require_gpu and localizer.provider != "CUDAExecutionProvider":
                raise FailedPrecondition(
                    f"{path}: runs on {localizer.provider}, and --require-gpu is set; check "
                    "the CUDA and cuDNN libraries ONNX Runtime needs"
                )
            if self.pad_batches == "on" or (
                self.pad_batches == "auto" and localizer.provider == "CUDAExecutionProvider"
            ):
                localizer.session_per_shape(self.batch_sizes, self.max_sessions)
            self._warm(localizer)
        except FailedPrecondition:
            raise
        except SynthlocError as exc:
            self._failed[path] = stamp
            log.error(
                "model %s/%s rejected, older versions keep serving: %s", name, version_dir.name, exc
            )
            return None
        self._failed.pop(path, None)
        return LoadedModel(name, version_dir.name, localizer, stamp, self.served_on)

    def _warm(self, localizer: OnnxLocalizer) -> None:
        """One run per batch size and warm side, so that the first requests of those shapes
        do not pay for planning (and, with a session per shape, for making the session)."""
        card = localizer.card
        for side in self.warm_sides:
            padded = bucket(side, card.size_divisor)
            for size in localizer.batch_sizes or (1,):
                localizer.run(np.zeros((size, card.input_channels, padded, padded), np.float32))

    def list(self) -> list[LoadedModel]:
        """Every loaded version, by model name then newest version first."""
        models = self._models
        return [m for name in sorted(models) for m in models[name].values()]

    def get(self, name: str = "", version: str = "", default: str = "") -> LoadedModel:
        """A loaded model; NotFound names what is loaded instead."""
        models = self._models
        name = name or default or (min(models) if models else "")
        if name not in models:
            loaded = ", ".join(sorted(models)) or "none"
            raise NotFound(f"model {name!r} is not loaded (loaded: {loaded})")
        versions = models[name]
        if not version:
            return versions[max(versions, key=_version_key)]
        if version not in versions:
            raise NotFound(
                f"model {name!r} has no loaded version {version!r} "
                f"(loaded: {', '.join(sorted(versions, key=_version_key))})"
            )
        return versions[version]
