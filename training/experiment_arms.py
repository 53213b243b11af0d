"""The experiment's moving parts: the synthesis service it starts, the step budget, each arm."""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from synthloc.files import atomic_write_text
from training.experiment import ExperimentConfig, arm_name

log = logging.getLogger(__name__)

RESULT = "result.json"
PLAN = "plan.json"
LOADING_OVERHEAD = 1.15  # measured: a real step (crops, targets, loader) vs the timed model step


class ArmRunner:
    """Runs arms one by one; owns the synthesis service the synthetic arms stream from."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.results: dict[str, dict[str, Any]] = {}
        self._server: Any = None
        self.synth_target: str | None = None

    def __enter__(self) -> ArmRunner:
        if any(data == "synthetic" for _, data in self.cfg.arms):
            self._start_synthesis()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.stop(grace=1.0)
            self._server = None

    def _start_synthesis(self) -> None:
        """A real synthesis service on a free loopback port, built from the sparse fraction."""
        from synth_service.server import create_server
        from synth_service.settings import SynthSettings

        settings = SynthSettings(
            library=self.cfg.train,
            host="127.0.0.1",
            port=0,
            metrics_port=-1,
            workers=self.cfg.synth_workers,
            annotated_fraction=self.cfg.annotated_fraction,
            fraction_seed=self.cfg.fraction_seed,
        )
        started = time.perf_counter()
        self._server, port = create_server(settings)
        self._server.start()
        self.synth_target = f"127.0.0.1:{port}"
        print(
            f"synthesis service on {self.synth_target} ({time.perf_counter() - started:.0f} s to "
            f"build its library from {self.cfg.annotated_fraction:.0%} of the annotations)",
            flush=True,
        )

    def steps_per_arm(self) -> int:
        """`cfg.steps`, else what fits TRAIN_SHARE of the budget at this machine's speed."""
        from training.experiment import TRAIN_SHARE

        if self.cfg.steps is not None:
            return self.cfg.steps
        plan = self.cfg.out / PLAN
        if plan.is_file():  # a continued run keeps the step count it started with
            steps = int(json.loads(plan.read_text())["steps"])
            print(f"budget: {steps} steps per arm, as planned in {plan}", flush=True)
            return steps
        seconds = {task: self._seconds_per_step(task) for task in {t for t, _ in self.cfg.arms}}
        per_round = sum(seconds[task] for task, _ in self.cfg.arms)
        steps = max(int(self.cfg.budget_minutes * 60 * TRAIN_SHARE / per_round), 10)
        print(
            "budget: "
            + ", ".join(f"{task} {s * 1000:.0f} ms/step" for task, s in sorted(seconds.items()))
            + f" -> {steps} steps of {self.cfg.batch_size} per arm",
            flush=True,
        )
        atomic_write_text(plan, json.dumps({"steps": steps, "seconds_per_step": seconds}))
        return steps

    def _seconds_per_step(self, task: str) -> float:
        """Median time of a training step of `task` on real crops, data loading estimated."""
        from training.config import CONFIGS
        from training.data import DataPosition, collate
        from training.models import build_model
        from training.objective import compute_loss
        from training.sources import CocoSource

        source = CocoSource(self.cfg.train, self.cfg.crop, seed=self.cfg.seed)
        names = source.class_names()
        overrides = {"width": self.cfg.width} if self.cfg.width else {}
        model_cfg = CONFIGS[task](num_classes=len(names), **overrides)
        device = torch.device(self.cfg.device)
        model = build_model(task, model_cfg).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        dataset = source.dataset(DataPosition(1), model_cfg.in_channels, 1, 0)
        rows = iter(dataset)
        images, targets = collate([next(rows) for _ in range(self.cfg.batch_size)])
        images = images.to(device)
        times = []
        for _ in range(6):
            started = time.perf_counter()
            loss, _ = compute_loss(task, model(images), targets, model_cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        return statistics.median(times[2:]) * LOADING_OVERHEAD

    def _source(self, task: str, data: str) -> Any:
        from training.sources import CocoSource, SynthSource, load_recipe

        cfg = self.cfg
        if data == "synthetic":
            assert self.synth_target is not None
            return SynthSource(self.synth_target, task, cfg.crop, load_recipe(cfg.recipe), cfg.seed)
        fraction = cfg.annotated_fraction if data == "sparse" else 1.0
        return CocoSource(cfg.train, cfg.crop, fraction, cfg.fraction_seed, cfg.seed)

    def run_arm(self, task: str, data: str, steps: int) -> dict[str, Any]:
        """Train (or resume), export and evaluate one arm; a finished arm is read back."""
        from training.engine import CHECKPOINT, TrainSettings, train
        from training.evaluate import evaluate
        from training.export import export_checkpoint

        name = arm_name(task, data)
        folder = self.cfg.out / "arms" / name
        done = folder / RESULT
        if done.is_file():
            result = json.loads(done.read_text())
            if result.get("steps") == steps:
                print(f"  {name}: finished earlier, kept ({done})", flush=True)
                self.results[name] = result
                return result
        if folder.is_dir() and _planned_steps(folder) != steps:
            shutil.rmtree(folder)  # trained for another step count: start the arm afresh
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / PLAN, json.dumps({"steps": steps}))
        started = time.perf_counter()
        checkpoint = train(
            TrainSettings(
                task=task,
                out=folder,
                steps=steps,
                source=self._source(task, data),
                batch_size=self.cfg.batch_size,
                lr=self.cfg.lr,
                device=self.cfg.device,
                resume=(folder / CHECKPOINT).is_file(),
                checkpoint_every=max(steps // 5, 50),
                seed=self.cfg.seed,
                config_overrides={"width": self.cfg.width} if self.cfg.width else {},
            )
        )
        train_seconds = time.perf_counter() - started
        model = self.cfg.out / "models" / name / "1" / "model.onnx"
        export_checkpoint(checkpoint, model, parity_coco=self.cfg.test, parity_images=1)
        metrics = evaluate(model, self.cfg.test)
        result = {
            **_arm_metrics(metrics),
            "train_seconds": round(train_seconds, 1),
            "model": str(model),
            "steps": steps,
            "loss_curve": str(folder / "loss.png"),
        }
        atomic_write_text(done, json.dumps(result, indent=2))
        self.results[name] = result
        summary = f"mAP@0.5 {_fmt(result['map50'])}"
        if "hit_rate" in result:
            summary += f", hit rate {_fmt(result['hit_rate'])}"
        print(f"  {name}: {summary} ({train_seconds:.0f} s training)", flush=True)
        return result


def _arm_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The evaluation figures results.json keeps for an arm."""
    keys = ("map50", "map50_95", "per_class", "pr50", "hit_rate", "point_precision", "point_f1")
    keys += ("hit_rate_at_count",)
    kept = {k: metrics[k] for k in keys if k in metrics}
    if "per_class_hits" in metrics:
        for name, hits in metrics["per_class_hits"].items():
            kept["per_class"].setdefault(name, {}).update(hits)
    kept["provider"] = metrics["provider"]
    return kept


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _planned_steps(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / PLAN).read_text())["steps"])
    except (OSError, ValueError, KeyError):
        return None
