"""What a person reads after `synthloc experiment`: a Markdown table and three figures."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from synthloc.coco import CocoDataset
from synthloc.files import atomic_write_text
from synthloc.imageio import read_image
from training.experiment import ExperimentConfig, arm_name

LABELS = {
    ("detector", "exhaustive"): "E: real, exhaustive labels",
    ("detector", "sparse"): "S: real, sparse labels",
    ("detector", "synthetic"): "Y: synthetic from sparse",
    ("cam", "real"): "CAM: real, image labels",
    ("cam", "synthetic"): "CAM: synthetic",
}
COLOURS = {
    "exhaustive": "tab:blue",
    "sparse": "tab:orange",
    "synthetic": "tab:green",
    "real": "tab:purple",
}


def _rows(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(task, data, m) for task in ("detector", "cam") for data, m in results[task].items()]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown_table(results: dict[str, Any]) -> str:
    """One row per arm: mAP overall and per class, CAM hit rate, training time."""
    rows = _rows(results)
    classes = sorted({name for _, _, m in rows for name in m["per_class"]})
    head = ["arm", "mAP@0.5", "mAP@[.5:.95]"]
    head += [f"{c} AP@0.5" for c in classes]
    head += ["CAM hit rate", "CAM point precision", "CAM point F1", "CAM hit@count", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, data, m in rows:
        cells = [LABELS.get((task, data), arm_name(task, data)), _fmt(m["map50"])]
        cells.append(_fmt(m["map50_95"]))
        cells += [_fmt(m["per_class"].get(c, {}).get("map50")) for c in classes]
        cam = ("hit_rate", "point_precision", "point_f1", "hit_rate_at_count")
        cells += [_fmt(m.get(k)) if task == "cam" else "" for k in cam]
        cells.append(f"{m['train_seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdict(results: dict[str, Any]) -> list[str]:
    """The paper's expectations, each checked against the measured figures."""
    det, cam, out = results["detector"], results["cam"], []
    if {"exhaustive", "synthetic"} <= det.keys():
        e, y = det["exhaustive"]["map50"] or 0.0, det["synthetic"]["map50"] or 0.0
        if e > 0:
            ok = "holds" if (e - y) / e <= 0.10 else "does not hold"
            relative = f"{(y - e) / e:+.1%}"
        else:
            ok, relative = "undefined (E has no AP)", "n/a"
        out.append(f"Y within 10 % of E on mAP@0.5: {ok} (Y {y:.3f} vs E {e:.3f}, {relative}).")
    if {"sparse", "synthetic", "exhaustive"} <= det.keys():
        s = det["sparse"]["map50"] or 0.0
        both = all((det[k]["map50"] or 0.0) > s for k in ("exhaustive", "synthetic"))
        out.append(f"E and Y above S: {'holds' if both else 'does not hold'} (S {s:.3f}).")
    if {"real", "synthetic"} <= cam.keys():
        real, synth = cam["real"], cam["synthetic"]
        # The design's measure, the fraction of objects hit, at a budget both arms share (as
        # many points as objects); and, at the model's threshold, hits against precision.
        wins = {
            key: (synth.get(key) or 0.0) > (real.get(key) or 0.0)
            for key in ("hit_rate_at_count", "point_f1")
        }
        if all(wins.values()):
            ok = "holds"
        elif not any(wins.values()):
            ok = "does not hold"
        else:
            ok = "mixed: better by " + " and ".join(k for k, won in wins.items() if won) + " only"
        out.append(
            f"CAM localization better with synthetic data: {ok} (hit rate at count "
            f"{_fmt(synth.get('hit_rate_at_count'))} vs {_fmt(real.get('hit_rate_at_count'))}, "
            f"point F1 {_fmt(synth.get('point_f1'))} vs {_fmt(real.get('point_f1'))}; at the "
            f"threshold: hit rate {_fmt(synth.get('hit_rate'))} vs {_fmt(real.get('hit_rate'))}, "
            f"point precision {_fmt(synth.get('point_precision'))} vs "
            f"{_fmt(real.get('point_precision'))})."
        )
    return out


def write_report(results: dict[str, Any], cfg: ExperimentConfig) -> None:
    """results.md, ap_per_arm.png, pr_curves.png and predictions.png in the run folder."""
    c = results["config"]
    text = [
        f"# Experiment: {Path(c['train']).name} -> {Path(c['test']).name}",
        "",
        f"{c['steps_per_arm']} steps of batch {c['batch_size']} ({c['crop']}² crops) per arm; "
        f"annotated fraction {c['annotated_fraction']}; {c['seconds'] / 60:.1f} min in all.",
        "",
        markdown_table(results),
        *[f"- {line}" for line in verdict(results)],
        "",
        "![AP per arm](ap_per_arm.png) ![precision-recall](pr_curves.png)",
        "",
        "![predictions](predictions.png)",
        "",
    ]
    atomic_write_text(cfg.out / "results.md", "\n".join(text))
    plot_ap(results, cfg.out / "ap_per_arm.png")
    plot_pr(results, cfg.out / "pr_curves.png")
    plot_predictions(results, cfg, cfg.out / "predictions.png")


def plot_ap(results: dict[str, Any], path: Path) -> None:
    """Bars of mAP@0.5 per arm (and the CAM hit rate at count beside the CAM arms)."""
    rows = _rows(results)
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    names = [LABELS.get((t, d), arm_name(t, d)) for t, d, _ in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [m["map50"] or 0 for _, _, m in rows], 0.4, label="mAP@0.5")
    hits = [m.get("hit_rate_at_count") or 0 for _, _, m in rows]
    ax.bar(x + 0.2, hits, 0.4, label="CAM hit rate, as many points as objects")
    for i, (_, _, m) in enumerate(rows):
        ax.text(i - 0.2, (m["map50"] or 0) + 0.01, _fmt(m["map50"]), ha="center", fontsize=8)
    ax.set_xticks(x, names, rotation=15, ha="right", fontsize=8)
    ax.set(ylim=(0, 1), ylabel="score", title="Localization on the real test images")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_pr(results: dict[str, Any], path: Path) -> None:
    """Precision-recall at IoU 0.5, one panel per class, one line per detector arm."""
    arms = results["detector"]
    classes = sorted({name for m in arms.values() for name in m.get("pr50", {}).get("precision")})
    fig, axes = plt.subplots(1, max(len(classes), 1), figsize=(5 * max(len(classes), 1), 4))
    for ax, name in zip(np.atleast_1d(axes), classes, strict=False):
        for data, m in arms.items():
            curve = m["pr50"]["precision"].get(name)
            if curve is not None:
                label = f"{LABELS[('detector', data)]} (AP {_fmt(m['per_class'][name]['map50'])})"
                ax.plot(m["pr50"]["recall"], curve, color=COLOURS.get(data), label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    _save(fig, path)


def plot_predictions(results: dict[str, Any], cfg: ExperimentConfig, path: Path) -> None:
    """The test image with the most objects: ground truth, then every arm's detections."""
    from infer_service.localizer import OnnxLocalizer
    from infer_service.overlay import draw_overlay

    ds = CocoDataset.load(cfg.test)
    by_image = ds.annotations_by_image()
    image = max(ds.images, key=lambda i: (len(by_image[i["id"]]), -i["width"] * i["height"]))
    pixels = read_image(ds.image_path(image))
    names = [c["name"] for c in sorted(ds.categories, key=lambda c: c["id"])]
    truth = [
        SimpleNamespace(class_name=ds.category_names[a["category_id"]], box=a["bbox"])
        for a in by_image[image["id"]]
    ]
    panels = [(f"ground truth: {len(truth)}", draw_overlay(pixels, truth, names))]
    for task, data, m in _rows(results):
        localizer = OnnxLocalizer(m["model"])
        found = [
            SimpleNamespace(
                class_name=localizer.card.class_names[d.class_id], box=d.box, point=d.point
            )
            for d in localizer.predict(pixels)
        ]
        if task == "cam":  # CAM regions are rough: show the points a user is given
            shown = draw_overlay(pixels, [], names)
            _draw_points(shown, found, names)
        else:
            shown = draw_overlay(pixels, found, names)
        panels.append((f"{LABELS.get((task, data), arm_name(task, data))}: {len(found)}", shown))
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 5 * rows), dpi=100)
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, (title, shown) in zip(np.ravel(axes), panels, strict=False):
        ax.imshow(shown)
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"{image['file_name']} (colours: {', '.join(names)})", fontsize=11)
    _save(fig, path)


def _draw_points(shown: np.ndarray, detections: list, names: list[str]) -> None:
    import cv2

    from infer_service.overlay import COLOURS as BOX_COLOURS

    for d in detections:
        colour = BOX_COLOURS[names.index(d.class_name) % len(BOX_COLOURS)]
        x, y = (round(v) for v in d.point)
        cv2.drawMarker(shown, (x, y), colour, cv2.MARKER_CROSS, 7, 1)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
