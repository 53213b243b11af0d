"""The training loop: one function, the same under a plain process and under torchrun (DDP).

Data, model and optimizer state all live in the checkpoint, so `--resume` continues the exact
run: the same samples in the same order, the same schedule.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from synthloc import __version__
from synthloc.errors import InvalidInput
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import CONFIGS, BackboneConfig, config_from_dict
from training.data import DataPosition, collate
from training.models import build_model
from training.objective import compute_loss
from training.plots import plot_loss_curve

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainSettings:
    """One training run (see `synthloc train --help`)."""

    task: str
    out: Path
    steps: int
    source: Any  # training.sources.Source: builds the dataset and describes the data
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    loader_workers: int = 0
    device: str = "cpu"
    resume: bool = False
    checkpoint_every: int = 200
    until: int | None = None  # stop at this step (checkpointed); the schedule still spans `steps`
    seed: int = 0
    config_overrides: dict[str, Any] = field(default_factory=dict)


def _distributed() -> tuple[int, int, int]:
    """(world, rank, local rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = int(os.environ.get("RANK", "0"))
    return world, rank, int(os.environ.get("LOCAL_RANK", "0"))


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of the base rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _merge_positions(position: DataPosition, world: int, workers: int) -> DataPosition:
    """Every rank knows only its own shards: gather them so rank 0 saves all of them."""
    if world == 1:
        return position
    gathered: list[dict] = [None] * world  # type: ignore[list-item]
    dist.all_gather_object(gathered, position.to_dict())
    merged = DataPosition.from_dict(gathered[0])
    for rank, raw in enumerate(gathered):
        for shard in range(rank * workers, (rank + 1) * workers):
            merged.next_index[shard] = raw["next_index"][shard]
    return merged


def train(settings: TrainSettings) -> Path:
    """Train, checkpoint and plot; return the final checkpoint path."""
    world, rank, local_rank = _distributed()
    try:
        return _train(settings, world, rank, local_rank)
    finally:
        if world > 1 and dist.is_initialized():
            # A rank that exits with its process group alive can abort in the group's threads
            # ("terminate called without an active exception", SIGABRT): seen in two .ci/run
            # runs, on a rank that had finished all its steps.
            dist.destroy_process_group()


def _train(settings: TrainSettings, world: int, rank: int, local_rank: int) -> Path:
    device = torch.device(settings.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    ckpt_path = settings.out / CHECKPOINT
    state = load_checkpoint(ckpt_path) if settings.resume else None
    if state is not None and state["task"] != settings.task:
        raise InvalidInput(f"{ckpt_path} holds a {state['task']} model, not a {settings.task}")
    class_names = settings.source.class_names()
    if state is not None:
        cfg: BackboneConfig = config_from_dict(settings.task, state["config"])
        if list(state["class_names"]) != class_names:
            raise InvalidInput(f"{ckpt_path}: classes {state['class_names']} != {class_names}")
    else:
        cfg = CONFIGS[settings.task](num_classes=len(class_names), **settings.config_overrides)
    torch.manual_seed(settings.seed)
    model = build_model(settings.task, cfg).to(device)
    workers = max(settings.loader_workers, 1)
    position = (
        DataPosition.from_dict(state["data_position"])
        if state is not None
        else DataPosition(num_shards=world * workers)
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    warmup = max(int(settings.warmup_fraction * settings.steps), 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _schedule(s, settings.steps, warmup)
    )
    step, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history = state["step"], list(state.get("history", []))
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    dataset = settings.source.dataset(position, cfg.in_channels, world, rank)
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        collate_fn=collate,
        num_workers=settings.loader_workers,
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    settings.out.mkdir(parents=True, exist_ok=True)
    seen_log = (settings.out / "samples.jsonl").open("a") if rank == 0 else None
    bar = tqdm(
        total=settings.steps,
        initial=step,
        desc=f"train {settings.task}",
        unit="step",
        disable=rank != 0,
    )
    started, images = time.perf_counter(), 0

    def snapshot() -> dict[str, Any]:
        return {
            "task": settings.task,
            "config": cfg.to_dict(),
            "class_names": class_names,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "history": history,
            "data_position": _merge_positions(position, world, workers).to_dict(),
            "provenance": {
                **settings.source.provenance(),
                "steps": step,
                "code_version": __version__,
                "seed": settings.seed,
            },
        }

    net.train()
    stop_at = min(settings.until or settings.steps, settings.steps)
    batches = iter(loader)
    try:
        while step < stop_at:
            batch_images, targets = next(batches)
            indices = [int(t["index"]) for t in targets]
            position.consumed(indices, settings.loader_workers)
            batch_images = batch_images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outputs = net(batch_images)
            loss, _ = compute_loss(settings.task, outputs, targets, cfg)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            images += len(indices) * world
            history.append([step, float(loss.detach())])
            if seen_log is not None:
                seen_log.write(json.dumps({"step": step, "indices": indices}) + "\n")
            rate = images / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{history[-1][1]:.4f}", img_s=f"{rate:.1f}")
            bar.update(1)
            if step % settings.checkpoint_every == 0 or step == stop_at:
                snap = snapshot()
                if rank == 0:
                    save_checkpoint(ckpt_path, snap)
    finally:
        # Stop the loader's workers now, while the stream they read still exists.
        del batches
    bar.close()
    if seen_log is not None:
        seen_log.close()
    if rank == 0:
        plot_loss_curve(history, settings.out / "loss.png", f"{settings.task} training loss")
        log.info("trained %d steps; checkpoint %s", step, ckpt_path)
    return ckpt_path
