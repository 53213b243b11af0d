"""Checkpoints: everything needed to rebuild the exact model and resume the exact run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from synthloc.errors import InvalidInput, NotFound
from synthloc.files import atomic_write

REQUIRED = ("task", "config", "class_names", "model", "step")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never destroys the previous checkpoint."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint; clear errors for missing or corrupt files."""
    if not path.is_file():
        raise NotFound(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise InvalidInput(f"{path}: not a readable synthloc checkpoint ({exc})") from exc
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise InvalidInput(f"{path}: not a synthloc checkpoint (missing {REQUIRED})")
    return state
