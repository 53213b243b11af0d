"""Training data: the synthesis stream and real COCO images, both as sharded index spaces.

Every sample has a global index. Shard k of n owns the indices i with i % n == k, and
n = world size x DataLoader workers, so every (rank, worker) reads a disjoint part. A worker
reads its shard in index order; the training loop records the last index it consumed per
shard (DataPosition), and a resumed run restarts each shard right after it: no sample is lost
or repeated. DataLoader hands out worker batches round-robin, so the position also keeps the
phase of that round-robin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from synthloc.errors import Unavailable
from synthloc.preprocess import match_channels, percentile_normalize
from synthloc.rpc_client import ChannelSecurity, error_from_rpc
from synthloc.samples import Sample, decode_batch
from synthloc.v1 import synthesis_pb2, synthesis_pb2_grpc

log = logging.getLogger(__name__)

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass
class DataPosition:
    """Where each shard of a sharded source continues; stored in checkpoints."""

    num_shards: int
    next_index: list[int] = field(default_factory=list)  # per shard
    phase: int = 0  # DataLoader round-robin: which shard's batch comes next

    def __post_init__(self) -> None:
        if not self.next_index:
            self.next_index = list(range(self.num_shards))

    def consumed(self, indices: list[int], num_loader_workers: int) -> None:
        """Record a training batch (all from one shard) as used."""
        last = max(indices)
        self.next_index[last % self.num_shards] = last + self.num_shards
        self.phase = (self.phase + 1) % max(num_loader_workers, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"num_shards": self.num_shards, "next_index": self.next_index, "phase": self.phase}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataPosition:
        return cls(raw["num_shards"], list(raw["next_index"]), raw.get("phase", 0))


def shard_of_this_worker(position: DataPosition, world: int, rank: int) -> tuple[int, int]:
    """(shard, next index) for the calling DataLoader worker of this rank."""
    info = get_worker_info()
    workers, worker = (info.num_workers, info.id) if info else (1, 0)
    if position.num_shards != world * workers:
        raise ValueError(
            f"data position has {position.num_shards} shards but this run reads "
            f"{world} ranks x {workers} workers; resume with the same layout"
        )
    # Rotate workers by the saved phase, so the resumed round-robin continues in order.
    shard = rank * workers + (worker + position.phase) % workers
    return shard, position.next_index[shard]


def to_tensor(pixels: np.ndarray, channels: int) -> torch.Tensor:
    """Image of any dtype -> normalised float32 CHW tensor with `channels` channels."""
    norm = match_channels(percentile_normalize(pixels), channels)
    return torch.from_numpy(np.ascontiguousarray(norm.transpose(2, 0, 1)))


def target_from_sample(sample: Sample) -> dict[str, torch.Tensor]:
    """Boxes (xyxy), labels, image labels and index of a streamed sample."""
    return {
        "boxes": torch.tensor(sample.boxes_xyxy(), dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(sample.class_ids, dtype=torch.int64),
        "image_labels": torch.tensor(sample.image_labels, dtype=torch.float32),
        "index": torch.tensor(sample.index, dtype=torch.int64),
    }


class SynthStream(IterableDataset):
    """Endless samples from SynthesisService, sharded, resumable, reconnecting with backoff.

    `target` is one address or several ("host:port,host:port", or "dns:///name:port" for a
    headless Service); several addresses are balanced round-robin by gRPC itself.
    """

    def __init__(
        self,
        target: str,
        position: DataPosition,
        recipe: synthesis_pb2.Recipe | None = None,
        seed: int = 0,
        channels: int = 1,
        world: int = 1,
        rank: int = 0,
        request_batch: int = 16,
        retries: int = 5,
        backoff_seconds: float = 0.5,
        security: ChannelSecurity | None = None,
    ) -> None:
        super().__init__()
        self.target, self.position, self.recipe, self.seed = target, position, recipe, seed
        self.channels, self.world, self.rank = channels, world, rank
        self.request_batch, self.retries, self.backoff = request_batch, retries, backoff_seconds
        self.security = security or ChannelSecurity()

    def channel(self) -> grpc.Channel:
        """A channel to every synthesis replica, balanced per stream (TLS when configured)."""
        target = self.target
        if "," in target and not target.startswith(("ipv4:", "ipv6:", "dns:")):
            target = "ipv4:" + target
        return self.security.channel(
            target,
            [
                ("grpc.lb_policy_name", "round_robin"),
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ],
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        shard, next_index = shard_of_this_worker(self.position, self.world, self.rank)
        num_shards = self.position.num_shards
        failures = 0
        with self.channel() as channel:
            stub = synthesis_pb2_grpc.SynthesisServiceStub(channel)
            while True:
                request = synthesis_pb2.StreamBatchesRequest(
                    seed=self.seed,
                    start_index=next_index,
                    endless=True,
                    batch_size=self.request_batch,
                    shard_index=shard,
                    num_shards=num_shards,
                )
                if self.recipe is not None:
                    request.recipe.CopyFrom(self.recipe)
                try:
                    batches = stub.StreamBatches(
                        request, wait_for_ready=failures > 0, metadata=self.security.metadata
                    )
                    for batch in batches:
                        failures = 0
                        for sample in decode_batch(batch):
                            next_index = sample.index + num_shards
                            yield to_tensor(sample.image, self.channels), target_from_sample(sample)
                except grpc.RpcError as err:
                    failures += 1
                    if err.code() not in RETRYABLE:  # refused, not broken: say why, typed
                        raise error_from_rpc(err, f"synthesis service at {self.target}") from None
                    if failures > self.retries:
                        raise Unavailable(
                            f"synthesis service at {self.target} failed ({err.code().name}: "
                            f"{err.details()}) after {failures} attempt(s); check that it "
                            "runs and is reachable"
                        ) from None
                    delay = self.backoff * 2 ** (failures - 1)
                    log.warning(
                        "stream from %s broke (%s); retrying at index %d in %.1f s",
                        self.target,
                        err.code().name,
                        next_index,
                        delay,
                    )
                    time.sleep(delay)


def collate(items: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[torch.Tensor, list]:
    """Stack images (all the same size) and keep per-image targets as a list."""
    return torch.stack([image for image, _ in items]), [target for _, target in items]
