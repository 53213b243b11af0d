"""`synthloc experiment`: the paper's comparison on real data, every arm with the same budget.

Detector arms learn from the same training images three ways: every object labelled
(exhaustive), only a fraction labelled with the rest left as unlabelled background (sparse), and
synthetic images composed by a real synthesis service from that same sparse fraction
(synthetic). CAM arms learn from image-level labels of real crops or of synthetic images. Every
arm trains the same model for the same steps and batch size, is exported to ONNX and evaluated
on the test set through the inference service's code path.

The run folder is also a model repository (`models/<arm>/1/model.onnx`) that `synthloc infer
serve --models` serves as it is. An interrupted run continues where it stopped: finished arms
are kept, a half-trained arm resumes from its checkpoint.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synthloc.coco import CocoDataset
from synthloc.errors import InvalidInput
from synthloc.files import atomic_write_text

log = logging.getLogger(__name__)

# (task, data) of every arm, in the order they run and are reported.
ARMS: tuple[tuple[str, str], ...] = (
    ("detector", "exhaustive"),
    ("detector", "sparse"),
    ("detector", "synthetic"),
    ("cam", "real"),
    ("cam", "synthetic"),
)
TRAIN_SHARE = 0.8  # of the budget; the rest is startup, export, evaluation and plots


def arm_name(task: str, data: str) -> str:
    """The folder and model name of an arm, e.g. `detector-synthetic`."""
    return f"{task}-{data}"


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment (see `synthloc experiment --help`)."""

    train: Path
    test: Path
    out: Path
    annotated_fraction: float = 0.25
    fraction_seed: int = 0
    budget_minutes: float = 25.0
    steps: int | None = None  # per arm; None: as many as the budget allows
    batch_size: int = 8
    crop: int = 256
    lr: float = 2e-3
    device: str = "cpu"
    seed: int = 0
    recipe: Path | None = None  # synthloc.v1.Recipe JSON for the synthetic arms
    synth_workers: int = 1
    arms: tuple[tuple[str, str], ...] = ARMS
    width: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, paths as strings."""
        raw = asdict(self)
        return {
            k: (str(v) if isinstance(v, Path) else v) for k, v in raw.items() if v is not None
        } | {"arms": [arm_name(*a) for a in self.arms]}


def validate(cfg: ExperimentConfig) -> tuple[CocoDataset, CocoDataset]:
    """Load both datasets; InvalidInput for anything that would fail an hour later."""
    for flag, path in (("--train", cfg.train), ("--test", cfg.test)):
        if not path.is_file():
            raise InvalidInput(f"{flag} {path}: no such COCO file")
    if not 0.0 < cfg.annotated_fraction <= 1.0:
        raise InvalidInput(f"--annotated-fraction must be in (0, 1], got {cfg.annotated_fraction}")
    if cfg.budget_minutes <= 0 and cfg.steps is None:
        raise InvalidInput(f"--budget-minutes must be > 0, got {cfg.budget_minutes}")
    if cfg.steps is not None and cfg.steps <= 0:
        raise InvalidInput(f"--steps must be > 0, got {cfg.steps}")
    unknown = sorted({a for a in cfg.arms} - set(ARMS))
    if unknown:
        raise InvalidInput(f"unknown arms {unknown}; known: {[arm_name(*a) for a in ARMS]}")
    train, test = CocoDataset.load(cfg.train), CocoDataset.load(cfg.test)
    train_names = {c["name"] for c in train.categories}
    missing = sorted({c["name"] for c in test.categories} - train_names)
    if missing:
        raise InvalidInput(
            f"{cfg.test}: categories {missing} are not in {cfg.train} "
            f"({sorted(train_names)}); train and test must share their classes"
        )
    if not train.annotations:
        raise InvalidInput(f"{cfg.train}: no annotations to learn from")
    if not test.annotations:
        raise InvalidInput(f"{cfg.test}: no annotations to evaluate against")
    small = min(min(i["height"], i["width"]) for i in train.images)
    if cfg.crop > small:
        raise InvalidInput(
            f"--crop {cfg.crop} is larger than the smallest training image side ({small})"
        )
    return train, test


def run_experiment(cfg: ExperimentConfig) -> dict[str, Any]:
    """Train, export and evaluate every arm; write results.json, results.md and the plots."""
    from training.experiment_arms import ArmRunner
    from training.experiment_report import write_report

    validate(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C: the synthesis service and its workers are stopped.
        signal.signal(signal.SIGTERM, _exit_on_signal)
    started = time.perf_counter()
    with ArmRunner(cfg) as runner:
        steps = runner.steps_per_arm()
        log.info("%d arms, %d steps each of batch %d", len(cfg.arms), steps, cfg.batch_size)
        for number, (task, data) in enumerate(cfg.arms, 1):
            print(f"[{number}/{len(cfg.arms)}] {arm_name(task, data)}", flush=True)
            runner.run_arm(task, data, steps)
        arms = runner.results
    results = assemble(cfg, arms, steps, time.perf_counter() - started)
    atomic_write_text(cfg.out / "results.json", json.dumps(results, indent=2))
    write_report(results, cfg)
    return results


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def assemble(
    cfg: ExperimentConfig, arms: dict[str, dict[str, Any]], steps: int, seconds: float
) -> dict[str, Any]:
    """results.json: {"detector": {data: M}, "cam": {data: C}, "config": {...}}."""
    results: dict[str, Any] = {"detector": {}, "cam": {}}
    for (task, data), entry in ((arm, arms[arm_name(*arm)]) for arm in cfg.arms):
        results[task][data] = entry
    results["config"] = {
        **cfg.to_dict(),
        "steps_per_arm": steps,
        "images_per_arm": steps * cfg.batch_size,
        "seconds": round(seconds, 1),
    }
    return results


def add_parser(subparsers: Any) -> None:
    """Register `synthloc experiment`."""
    p = subparsers.add_parser(
        "experiment",
        help="the paper's comparison: exhaustive vs sparse vs synthetic, detector and CAM",
        description="Train every arm with the same model and budget, export, evaluate on real "
        "test images, write results.json, results.md and plots to --out.",
    )
    p.add_argument("--train", type=Path, required=True, help="COCO training file (exhaustive)")
    p.add_argument("--test", type=Path, required=True, help="COCO test file (exhaustive)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--annotated-fraction", type=float, default=0.25)
    p.add_argument("--fraction-seed", type=int, default=0)
    p.add_argument(
        "--budget-minutes", type=float, default=25.0, help="whole run, all arms (default 25)"
    )
    p.add_argument("--steps", type=int, help="steps per arm (overrides the budget)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", type=Path, help="synthloc.v1.Recipe JSON for the synthetic arms")
    p.add_argument("--synth-workers", type=int, default=1, help="composition processes")
    p.add_argument("--width", type=float, help="model width multiplier (bigger on a GPU)")
    p.add_argument(
        "--arms",
        default=",".join(arm_name(*a) for a in ARMS),
        help="comma-separated subset of the arms (default: all five)",
    )
    p.set_defaults(run=_run_cli)


def _run_cli(args: Any) -> int:
    from training.cli import _need_torch

    _need_torch()
    by_name = {arm_name(*a): a for a in ARMS}
    wanted = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in wanted if a not in by_name]
    if unknown or not wanted:
        raise InvalidInput(f"--arms: unknown {unknown or 'empty'}; choose from {sorted(by_name)}")
    cfg = ExperimentConfig(
        train=args.train,
        test=args.test,
        out=args.out,
        annotated_fraction=args.annotated_fraction,
        fraction_seed=args.fraction_seed,
        budget_minutes=args.budget_minutes,
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        recipe=args.recipe,
        synth_workers=args.synth_workers,
        arms=tuple(by_name[a] for a in wanted),
        width=args.width,
    )
    results = run_experiment(cfg)
    from training.experiment_report import markdown_table, verdict

    print(markdown_table(results))
    for line in verdict(results):
        print(f"- {line}")
    print(f"results: {cfg.out / 'results.json'}, {cfg.out / 'results.md'} and plots")
    return 0
