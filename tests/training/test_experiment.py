"""`synthloc experiment`: a short real run (real synthesis service), outputs, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infer_service.localizer import OnnxLocalizer
from synthloc.cli import main
from synthloc.coco import CocoDataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARMS = "detector-exhaustive,detector-synthetic,cam-synthetic"


@pytest.fixture(scope="module")
def val(data_root: Path) -> Path:
    return data_root / "mnfinder" / "val.json"


@pytest.fixture(scope="module")
def run(val: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("experiment")
    args = ["experiment", "--train", str(val), "--test", str(val), "--out", str(out)]
    args += ["--steps", "4", "--batch-size", "2", "--crop", "128", "--arms", ARMS]
    assert main(args) == 0
    return out


def test_results_json_has_the_documented_shape(run: Path, val: Path) -> None:
    results = json.loads((run / "results.json").read_text())
    assert set(results) == {"detector", "cam", "config"}
    assert set(results["detector"]) == {"exhaustive", "synthetic"}
    assert set(results["cam"]) == {"synthetic"}
    classes = {c["name"] for c in CocoDataset.load(val).categories}
    for task, data in (("detector", "exhaustive"), ("detector", "synthetic"), ("cam", "synthetic")):
        m = results[task][data]
        assert isinstance(m["map50"], float) and 0.0 <= m["map50"] <= 1.0
        assert isinstance(m["map50_95"], float) and m["map50_95"] <= m["map50"] + 1e-9
        assert set(m["per_class"]) == classes
        assert all(isinstance(v["map50"], float) for v in m["per_class"].values())
        assert m["train_seconds"] > 0 and m["steps"] == 4
        localizer = OnnxLocalizer(m["model"])  # a loadable, served model
        assert localizer.card.task == task
        assert Path(m["model"]) == run / "models" / f"{task}-{data}" / "1" / "model.onnx"
        assert len(m["pr50"]["recall"]) == 101
    synthetic_cam = results["cam"]["synthetic"]
    assert 0.0 <= synthetic_cam["hit_rate"] <= 1.0
    assert 0.0 <= synthetic_cam["hit_rate_at_count"] <= 1.0
    assert set(synthetic_cam["per_class"]["nucleus"]) >= {"map50", "hit_rate_at_count"}
    config = results["config"]
    assert config["steps_per_arm"] == 4 and config["images_per_arm"] == 8
    assert config["annotated_fraction"] == 0.25 and config["arms"] == ARMS.split(",")


def test_report_table_and_figures(run: Path) -> None:
    table = (run / "results.md").read_text()
    assert "| E: real, exhaustive labels |" in table and "| CAM: synthetic |" in table
    assert "Y within 10 % of E" in table
    for name in ("ap_per_arm.png", "pr_curves.png", "predictions.png"):
        data = (run / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name


def test_a_rerun_keeps_finished_arms(run: Path, val: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = run / "arms" / "detector-exhaustive" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    args = ["experiment", "--train", str(val), "--test", str(val), "--out", str(run)]
    args += ["--steps", "4", "--batch-size", "2", "--crop", "128", "--arms", "detector-exhaustive"]
    assert main(args) == 0
    assert "finished earlier, kept" in capsys.readouterr().out
    assert checkpoint.stat().st_mtime_ns == before


def _experiment(tmp_path: Path, train: Path, test: Path, *extra: str) -> list[str]:
    out = str(tmp_path / "out")
    return ["experiment", "--train", str(train), "--test", str(test), "--out", out, *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--annotated-fraction", "0"), "--annotated-fraction must be in (0, 1]"),
        (("--arms", "detector-weird"), "--arms: unknown ['detector-weird']"),
        (("--steps", "-3"), "--steps must be > 0"),
        (("--crop", "4096"), "--crop 4096 is larger than the smallest training image side"),
    ],
)
def test_bad_arguments_exit_2_with_the_fix(
    tmp_path: Path, val: Path, extra: tuple[str, ...], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(_experiment(tmp_path, val, val, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.json").exists()


def test_missing_file_and_foreign_classes_exit_2(
    tmp_path: Path, val: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(_experiment(tmp_path, tmp_path / "nope.json", val)) == 2
    assert "--train" in capsys.readouterr().err
    foreign = json.loads(val.read_text())
    foreign["categories"].append({"id": 99, "name": "mitochondrion"})
    (tmp_path / "foreign.json").write_text(json.dumps(foreign))
    test = tmp_path / "foreign.json"
    assert main(_experiment(tmp_path, val, test)) == 2
    err = capsys.readouterr().err
    assert "['mitochondrion'] are not in" in err and "share their classes" in err
