"""SynthesisClient: a small typed client for the synthesis service.

    with SynthesisClient("127.0.0.1:50051") as client:
        library = client.describe_library()
        recipe = dataclasses.replace(library.default_recipe, height=256, width=256)
        for sample in client.stream(recipe, seed=7, count=100, include_masks=True):
            sample.image, sample.boxes, sample.class_names, sample.masks

Failed calls raise the synthloc.errors class of their status code (InvalidInput, Unavailable,
...), with a message that names the server and repeats its explanation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from synth_service.recipe import Recipe
from synth_service.recipe_proto import recipe_from_proto, recipe_to_proto
from synthloc.errors import InvalidInput
from synthloc.rpc_client import ServiceClient
from synthloc.samples import ObjectProvenance, Sample, decode_batch
from synthloc.v1 import common_pb2, synthesis_pb2, synthesis_pb2_grpc

__all__ = ["ClassInfo", "LibraryInfo", "ObjectProvenance", "Recipe", "Sample", "SynthesisClient"]

_ENCODINGS = {"raw": common_pb2.IMAGE_ENCODING_RAW, "png": common_pb2.IMAGE_ENCODING_PNG}
_DTYPES = {common_pb2.DTYPE_UINT8: "uint8", common_pb2.DTYPE_UINT16: "uint16"}


@dataclass(frozen=True)
class ClassInfo:
    """One class of the library, with the sizes of its objects (box side sqrt(w * h), px)."""

    id: int
    name: str
    object_count: int
    size_p5: float
    size_p50: float
    size_p95: float
    mean_area: float


@dataclass(frozen=True)
class LibraryInfo:
    """What a synthesis server composes from (DescribeLibrary)."""

    classes: tuple[ClassInfo, ...]
    source_images: int
    backgrounds: int  # cleaned background tiles
    dtype: str  # of the source images: uint8 or uint16
    channels: int
    library_hash: str  # identifies objects and backgrounds exactly
    default_recipe: Recipe  # every field as the server fills it in
    default_recipe_hash: str
    max_canvas_pixels: int
    max_message_bytes: int

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


class SynthesisClient(ServiceClient):
    """Calls synthloc.v1.SynthesisService at `target` (one address, several separated by commas,
    or a dns:/// name; see ServiceClient for the other options)."""

    service_name = "synthloc.v1.SynthesisService"
    description = "synthesis service"
    default_max_message_bytes = 256 << 20  # a batch of large canvases is big
    stub_class = synthesis_pb2_grpc.SynthesisServiceStub

    def describe_library(self) -> LibraryInfo:
        """Classes, object counts and sizes, hashes and the server's default recipe."""
        msg = self._unary(self._stub.DescribeLibrary, synthesis_pb2.DescribeLibraryRequest())
        return LibraryInfo(
            classes=tuple(
                ClassInfo(c.id, c.name, c.object_count, *_sizes(c.size)) for c in msg.classes
            ),
            source_images=msg.source_images,
            backgrounds=msg.backgrounds,
            dtype=_DTYPES.get(msg.dtype, "unspecified"),
            channels=msg.channels,
            library_hash=msg.library_hash,
            default_recipe=recipe_from_proto(msg.default_recipe, Recipe()),
            default_recipe_hash=msg.default_recipe_hash,
            max_canvas_pixels=msg.max_canvas_pixels,
            max_message_bytes=msg.max_message_bytes,
        )

    def stream(
        self,
        recipe: Recipe | synthesis_pb2.Recipe | None = None,
        *,
        seed: int = 0,
        start_index: int = 0,
        count: int | None = None,
        batch_size: int = 8,
        shard_index: int = 0,
        num_shards: int = 1,
        encoding: Literal["raw", "png"] = "raw",
        include_masks: bool = False,
    ) -> Iterator[Sample]:
        """Samples in global-index order, decoded to numpy.

        recipe: None = the server's default; a Recipe dataclass is sent in full (start from
        describe_library().default_recipe); a proto Recipe's unset fields take the server's
        defaults. count: samples in this shard's stream, None = endless (stop iterating to
        end it; the call is cancelled). Shard k of n gets the indices i >= start_index with
        i % n == k. Encoding "png" is lossless and smaller on the wire, "raw" cheaper to decode.
        """
        request = stream_request(
            recipe, seed, start_index, count, batch_size, shard_index, num_shards, encoding
        )
        request.include_masks = include_masks
        return self._samples(request)  # not a generator itself, so bad arguments raise here

    def _samples(self, request: synthesis_pb2.StreamBatchesRequest) -> Iterator[Sample]:
        for batch in self._streaming(self._stub.StreamBatches, request):
            yield from decode_batch(batch)


def _sizes(size: synthesis_pb2.SizeStats) -> tuple[float, float, float, float]:
    return size.p5, size.p50, size.p95, size.mean_area


def stream_request(
    recipe: Recipe | synthesis_pb2.Recipe | None,
    seed: int,
    start_index: int,
    count: int | None,
    batch_size: int,
    shard_index: int,
    num_shards: int,
    encoding: str,
) -> synthesis_pb2.StreamBatchesRequest:
    """A StreamBatchesRequest, refusing what protobuf cannot carry with a message naming it."""
    for name, value in (("seed", seed), ("start_index", start_index), ("shard_index", shard_index)):
        if not isinstance(value, int) or value < 0:
            raise InvalidInput(f"{name}: must be an integer >= 0, got {value!r}")
    for name, value in (("batch_size", batch_size), ("num_shards", num_shards)):
        if not isinstance(value, int) or value < 1:
            raise InvalidInput(f"{name}: must be an integer >= 1, got {value!r}")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise InvalidInput(
            f"count: must be an integer >= 1, or None for an endless stream; got {count!r}"
        )
    if encoding not in _ENCODINGS:
        raise InvalidInput(f"encoding: must be 'raw' or 'png', got {encoding!r}")
    request = synthesis_pb2.StreamBatchesRequest(
        seed=seed,
        start_index=start_index,
        batch_size=batch_size,
        shard_index=shard_index,
        num_shards=num_shards,
        encoding=_ENCODINGS[encoding],
    )
    if count is None:
        request.endless = True
    else:
        request.count = count
    if isinstance(recipe, Recipe):
        request.recipe.CopyFrom(recipe_to_proto(recipe))
    elif isinstance(recipe, synthesis_pb2.Recipe):
        request.recipe.CopyFrom(recipe)
    elif recipe is not None:
        raise InvalidInput(
            f"recipe: expected a Recipe, a synthloc.v1.Recipe message or None, got "
            f"{type(recipe).__name__}"
        )
    return request
