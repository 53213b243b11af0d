"""An exported localizer on ONNX Runtime: load and validate, preprocess, pad, run, decode.

torch-free. The model card inside the ONNX file says how to preprocess and decode, so a model
file is all this needs; evaluation uses the same class so it measures what is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
)

from infer_service.postprocess import Detection, crop_to_image, decode_outputs
from infer_service.sessions import ShapeSessions
from synthloc.errors import InvalidInput, NotFound
from synthloc.modelcard import METADATA_KEY, ModelCard
from synthloc.preprocess import (
    Window,
    match_channels,
    normalize_into,
    percentile_normalize,
    percentiles,
)

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
OUTPUT_NAMES = {"detector": ("heatmap", "size", "offset"), "cam": ("logits", "cam")}
_LOAD_ERRORS = (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile)


def _card_of(session: ort.InferenceSession, path: Path) -> ModelCard:
    """The validated model card stored in the session's model metadata."""
    metadata = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in metadata:
        raise InvalidInput(
            f"{path}: the ONNX model has no synthloc model card (metadata key "
            f"{METADATA_KEY!r}); export it with `synthloc export`"
        )
    try:
        card = ModelCard.from_json(metadata[METADATA_KEY])
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from exc
    if card.preprocessing.type != "percentile":
        raise InvalidInput(
            f"{path}: unknown preprocessing {card.preprocessing.type!r}; this synthloc knows "
            "'percentile'"
        )
    return card


def _check_graph(session: ort.InferenceSession, card: ModelCard, path: Path) -> None:
    """Raise InvalidInput unless the graph's inputs and outputs match the card's contract."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != "image" or len(inputs[0].shape) != 4:
        found = [(i.name, i.shape) for i in inputs]
        raise InvalidInput(f"{path}: expected one input 'image' [B, C, H, W], found {found}")
    if inputs[0].shape[1] != card.input_channels:
        raise InvalidInput(
            f"{path}: the graph takes {inputs[0].shape[1]} channels but the model card says "
            f"{card.input_channels}"
        )
    outputs = {o.name: o.shape for o in session.get_outputs()}
    expected = OUTPUT_NAMES[card.task]
    if set(outputs) != set(expected):
        raise InvalidInput(
            f"{path}: a {card.task} model must output {list(expected)}, found {list(outputs)}"
        )
    classes = outputs["cam" if card.task == "cam" else "heatmap"][1]
    if isinstance(classes, int) and classes != len(card.class_names):
        raise InvalidInput(
            f"{path}: the graph outputs {classes} classes but the model card names "
            f"{len(card.class_names)}: {list(card.class_names)}"
        )


BUCKETS = (256, 384, 512, 768, 1024, 1536, 2048)


def batch_buckets(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two below max_batch_size, and max_batch_size itself: 8 -> (1, 2, 4, 8)."""
    top = max(max_batch_size, 1)
    return tuple(sorted({min(1 << i, top) for i in range(top.bit_length() + 1)}))


def bucket(side: int, divisor: int) -> int:
    """The padded length of an image side: the smallest bucket that holds it, else a multiple
    of 1024. A few fixed shapes keep ONNX Runtime (and cuDNN) from planning, and caching
    memory for, every image size it meets; evaluation pads alike, so it measures what serves.
    """
    for size in BUCKETS:
        if side <= size and size % divisor == 0:
            return size
    step = max(1024 // divisor, 1) * divisor
    return -(-side // step) * step


class OnnxLocalizer:
    """One exported localizer, ready to localize objects in images of any size."""

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = None,
        session_options: ort.SessionOptions | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFound(f"{self.path}: no such ONNX model file")
        self._providers = list(providers or DEFAULT_PROVIDERS)
        self._options = session_options
        # Sessions made later (session_per_shape) load these bytes, not a file that a new
        # version may have replaced or removed by then.
        self._model = self.path.read_bytes()
        self.session = self._new_session()
        self.card = _card_of(self.session, self.path)
        _check_graph(self.session, self.card, self.path)
        self.output_names = OUTPUT_NAMES[self.card.task]
        self._pool: ShapeSessions | None = None  # a session per input shape, or one for all

    def _new_session(self) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(
                self._model, sess_options=self._options, providers=self._providers
            )
        except _LOAD_ERRORS as exc:
            raise InvalidInput(f"{self.path}: not a loadable ONNX model ({exc})") from exc

    def session_per_shape(self, batch_sizes: Sequence[int], max_sessions: int = 16) -> None:
        """From now on pad each batch with zero images to the next of `batch_sizes` (split a
        larger one), and run each input shape on a session of its own (infer_service.sessions:
        the CUDA provider re-plans its convolutions whenever the shape changes). Outputs are
        cut back to the batch's own images."""
        self._pool = ShapeSessions(
            self._new_session, batch_sizes, max_sessions, self.session, str(self.path)
        )

    @property
    def provider(self) -> str:
        """The execution provider ONNX Runtime actually runs this model on."""
        return self.session.get_providers()[0]

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes run (session_per_shape), or () when any size runs as it comes."""
        return self._pool.batch_sizes if self._pool else ()

    @property
    def session_shapes(self) -> list[tuple[int, ...]]:
        """The input shapes with a session of their own, least recently used first."""
        return self._pool.shapes if self._pool else []

    def padded_batch_size(self, count: int) -> int:
        """The batch size `count` images run as."""
        return self._pool.batch_size(count) if self._pool else count

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """HW/HWC image of any dtype -> normalised float32 CHW, padded bottom/right to the divisor
        (see prepare_scaled)."""
        return self.prepare_scaled(image)[0]

    def prepare_scaled(
        self, image: np.ndarray, window: Window | None = None
    ) -> tuple[np.ndarray, Window]:
        """prepare(image), and the intensities it scaled to 0 and 1: the image's percentiles
        (the card's), or `window` when given.

        The padding is 0 after normalisation, the image's 1st percentile: the empty background of
        a fluorescence image. Replicating edges instead would smear objects cut by the border
        into streaks the model can mistake for objects, and distort the border objects' boxes.
        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
            raise InvalidInput(f"expected a non-empty HW or HWC image, got shape {image.shape}")
        channels = self.card.input_channels
        if image.ndim == 3 and image.shape[2] == 4 and channels != 4:
            image = image[..., :3]  # alpha carries no intensity
        pre = self.card.preprocessing
        h, w = image.shape[:2]
        step = self.card.size_divisor
        padded = np.empty((channels, bucket(h, step), bucket(w, step)), np.float32)
        padded[:, h:, :] = 0
        padded[:, :h, w:] = 0
        if (1 if image.ndim == 2 else image.shape[2]) == channels:
            # Straight into the batch buffer: a third of the time of normalising, converting
            # and copying (1.1 ms -> 0.4 ms for 512x512), the same values.
            return padded, normalize_into(image, padded[:, :h, :w], pre.low, pre.high, window)
        if window is None:
            lo, hi = percentiles(image, (pre.low, pre.high))
            window = (float(lo), float(hi))
        norm = percentile_normalize(image, window=window)
        try:
            norm = match_channels(norm, channels)  # the same rule as training's loaders
        except ValueError:
            raise InvalidInput(
                f"the model takes {channels} channels; cannot convert an image with "
                f"{image.shape[2]} channels"
            ) from None
        padded[:, :h, :w] = norm.transpose(2, 0, 1)
        return padded, window

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw named outputs for a float32 NCHW batch whose H, W are multiples of the divisor."""
        step, channels = self.card.size_divisor, self.card.input_channels
        if (
            batch.dtype != np.float32
            or batch.ndim != 4
            or batch.shape[1] != channels
            or batch.shape[2] % step
            or batch.shape[3] % step
        ):
            raise InvalidInput(
                f"expected a float32 batch [B, {channels}, H, W] with H, W multiples of {step}, "
                f"got {batch.dtype} {list(batch.shape)}"
            )
        names = list(self.output_names)
        if self._pool is None:
            return dict(zip(names, self.session.run(names, {"image": batch}), strict=True))
        count, largest = batch.shape[0], self._pool.batch_sizes[-1]
        if count > largest:
            parts = [self.run(batch[i : i + largest]) for i in range(0, count, largest)]
            return {name: np.concatenate([part[name] for part in parts]) for name in names}
        size = self._pool.batch_size(count)
        if size > count:
            padded = np.zeros((size, *batch.shape[1:]), np.float32)
            padded[:count] = batch
            batch = padded
        values = self._pool.session(batch.shape).run(names, {"image": batch})
        return {name: value[:count] for name, value in zip(names, values, strict=True)}

    def predict(self, image: np.ndarray, score_threshold: float | None = None) -> list[Detection]:
        """Detections in the image's own pixel coordinates (HW/HWC, any dtype)."""
        return self.predict_batch([image], score_threshold)[0]

    def predict_batch(
        self, images: Sequence[np.ndarray], score_threshold: float | None = None
    ) -> list[list[Detection]]:
        """Detections per image for images of one size, run as one batch."""
        if not images:
            return []
        shapes = {np.shape(image)[:2] for image in images}
        if len(shapes) != 1:
            raise InvalidInput(f"a batch needs images of one size, got {sorted(shapes)}")
        h, w = shapes.pop()
        outputs = self.run(np.stack([self.prepare(image) for image in images]))
        return [
            self.detections(
                {name: value[i] for name, value in outputs.items()}, h, w, score_threshold
            )
            for i in range(len(images))
        ]

    def detections(
        self,
        outputs: dict[str, np.ndarray],
        height: int,
        width: int,
        score_threshold: float | None = None,
    ) -> list[Detection]:
        """Decode one image's raw outputs (no batch axis) for an image of height x width."""
        threshold = self.card.score_threshold if score_threshold is None else score_threshold
        detections = decode_outputs(self.card.task, outputs, self.card.stride, threshold)
        # Padding is bottom/right only, so coordinates need no shift, only cropping.
        return crop_to_image(detections, width, height)
