"""Figures a person looks at after training (matplotlib, file output only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np


def plot_loss_curve(history: list[list[float]], path: Path, title: str) -> None:
    """Loss per step (thin) and its running mean (bold), log-scaled, to a PNG file."""
    if not history:
        return
    steps, losses = np.array(history, float).T
    window = max(len(losses) // 50, 1)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, losses, lw=0.6, alpha=0.4, color="tab:blue", label="loss")
    ax.plot(steps[window - 1 :], smooth, lw=2.0, color="tab:blue", label=f"mean of {window}")
    if (losses > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
