"""Where training data comes from: the synthesis service or a real COCO file."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from torch.utils.data import IterableDataset

from synthloc.coco import CocoDataset
from synthloc.errors import InvalidInput, Unauthenticated, Unavailable
from synthloc.rpc_client import ChannelSecurity
from synthloc.v1 import synthesis_pb2, synthesis_pb2_grpc
from training.coco_data import CocoCrops
from training.data import DataPosition, SynthStream


def load_recipe(path: Path | None) -> synthesis_pb2.Recipe | None:
    """A synthloc.v1.Recipe from a JSON file (proto JSON names), or None."""
    if path is None:
        return None
    try:
        return json_format.Parse(path.read_text(), synthesis_pb2.Recipe())
    except (OSError, json_format.ParseError) as exc:
        raise InvalidInput(f"{path}: not a readable Recipe JSON ({exc})") from exc


@dataclass
class SynthSource:
    """Samples streamed from SynthesisService replicas at `target`."""

    target: str
    task: str
    crop: int
    recipe: synthesis_pb2.Recipe | None = None
    seed: int = 0
    retries: int = 5
    backoff_seconds: float = 0.5
    security: ChannelSecurity = field(default_factory=ChannelSecurity)

    def __post_init__(self) -> None:
        recipe = synthesis_pb2.Recipe()
        if self.recipe is not None:
            recipe.CopyFrom(self.recipe)
        if not recipe.HasField("height") and not recipe.HasField("width"):
            recipe.height = recipe.width = self.crop
        if self.task == "cam" and recipe.label_mode == synthesis_pb2.LABEL_MODE_UNSPECIFIED:
            # One class per image, classes balanced. With presence labels (any subset of the
            # classes) CAMs learned from mnfinder lit up the background, not the objects:
            # hit rate 0.05 against 0.36 with this mode (250 steps; see the README's results).
            recipe.label_mode = synthesis_pb2.LABEL_MODE_WEAK_SINGLE_CLASS
        self.recipe = recipe
        self._info: dict[str, Any] | None = None

    def _probe(self) -> dict[str, Any]:
        """Ask the service once (with retries) for its classes and hashes; validates the recipe."""
        if self._info is not None:
            return self._info
        stream = SynthStream(
            self.target, DataPosition(1), self.recipe, self.seed, security=self.security
        )
        metadata = self.security.metadata
        for attempt in range(self.retries + 1):
            try:
                with stream.channel() as channel:
                    stub = synthesis_pb2_grpc.SynthesisServiceStub(channel)
                    library = stub.DescribeLibrary(
                        synthesis_pb2.DescribeLibraryRequest(), timeout=30, metadata=metadata
                    )
                    first = next(
                        iter(
                            stub.StreamBatches(
                                synthesis_pb2.StreamBatchesRequest(
                                    recipe=self.recipe, seed=self.seed, count=1, batch_size=1
                                ),
                                timeout=60,
                                metadata=metadata,
                            )
                        )
                    )
                break
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidInput(
                        f"the synthesis service refused the recipe: {err.details()}"
                    ) from None
                if err.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    raise Unauthenticated(
                        f"synthesis service at {self.target} refused the call: {err.details()} "
                        "(give its token with --synth-token or SYNTHLOC_TRAIN_SYNTH_TOKEN)"
                    ) from None
                if attempt == self.retries:
                    raise Unavailable(
                        f"synthesis service at {self.target} unreachable after "
                        f"{self.retries + 1} attempts ({err.code().name}: {err.details()}); "
                        "start it with `synthloc synth serve` or check the address"
                    ) from None
                time.sleep(self.backoff_seconds * 2**attempt)
        self._info = {
            "class_names": [c.name for c in library.classes],
            "library_hash": first.library_hash,
            "recipe_hash": first.recipe_hash,
        }
        return self._info

    def class_names(self) -> list[str]:
        return list(self._probe()["class_names"])

    def dataset(
        self, position: DataPosition, channels: int, world: int, rank: int
    ) -> IterableDataset:
        return SynthStream(
            self.target,
            position,
            self.recipe,
            self.seed,
            channels,
            world,
            rank,
            retries=self.retries,
            backoff_seconds=self.backoff_seconds,
            security=self.security,
        )

    def provenance(self) -> dict[str, Any]:
        info = self._probe()
        return {
            "data": "synthetic",
            "synth_target": self.target,
            "seed": self.seed,
            "recipe_hash": info["recipe_hash"],
            "library_hash": info["library_hash"],
            "recipe": json_format.MessageToDict(self.recipe),
        }


@dataclass
class CocoSource:
    """Random crops of a real COCO training file, optionally with sparse annotations."""

    path: Path
    crop: int
    annotated_fraction: float = 1.0
    fraction_seed: int = 0
    seed: int = 0

    def class_names(self) -> list[str]:
        ds = CocoDataset.load(self.path)
        return [c["name"] for c in sorted(ds.categories, key=lambda c: c["id"])]

    def dataset(
        self, position: DataPosition, channels: int, world: int, rank: int
    ) -> IterableDataset:
        return CocoCrops(
            self.path,
            position,
            self.crop,
            self.annotated_fraction,
            self.fraction_seed,
            self.seed,
            channels,
            self.class_names(),
            world,
            rank,
        )

    def provenance(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        return {
            "data": "real",
            "coco": str(self.path),
            "coco_sha256": digest,
            "annotated_fraction": self.annotated_fraction,
            "fraction_seed": self.fraction_seed,
            "seed": self.seed,
        }
