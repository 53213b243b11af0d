"""Training end to end on real data and the real synthesis stream: loss, AP, resume, errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synthloc.cli import main
from training.checkpoint import load_checkpoint
from training.data import DataPosition

SYNTHLOC = str(Path(sys.executable).parent / "synthloc")


def _samples(run: Path) -> list[list[int]]:
    return [
        json.loads(line)["indices"] for line in (run / "samples.jsonl").read_text().splitlines()
    ]


def test_short_training_on_stardist_lowers_the_loss_and_finds_nuclei(
    tmp_path: Path, data_root: Path
) -> None:
    coco = data_root / "stardist" / "stardist.json"
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "detector",
                "--coco",
                str(coco),
                "--steps",
                "120",
                "--batch-size",
                "4",
                "--out",
                str(run),
                "--lr",
                "3e-3",
            ]
        )
        == 0
    )
    history = load_checkpoint(run / "checkpoint.pt")["history"]
    first = sum(loss for _, loss in history[:10]) / 10
    last = sum(loss for _, loss in history[-10:]) / 10
    assert last < 0.5 * first
    assert (run / "loss.png").stat().st_size > 10_000
    model = tmp_path / "model.onnx"
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(model)]) == 0
    assert (
        main(
            [
                "eval",
                "--model",
                str(model),
                "--coco",
                str(coco),
                "--json",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["map50"] > 0.1
    assert set(result["per_class"]) == {"nucleus"}


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_sees_exactly_the_samples_of_an_unbroken_run(
    tmp_path: Path, synth_server, workers: int
) -> None:
    address = f"127.0.0.1:{synth_server.port}"
    common = [
        "train",
        "detector",
        "--synth",
        address,
        "--batch-size",
        "2",
        "--crop",
        "64",
        "--workers",
        str(workers),
        "--checkpoint-every",
        "3",
    ]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*common, "--steps", "6", "--out", str(whole)]) == 0
    assert main([*common, "--steps", "6", "--until", "3", "--out", str(split)]) == 0
    assert main([*common, "--steps", "6", "--out", str(split), "--resume"]) == 0
    assert _samples(split) == _samples(whole)
    indices = [i for step in _samples(whole) for i in step]
    assert len(indices) == len(set(indices)) == 12  # no sample twice
    a = load_checkpoint(whole / "checkpoint.pt")["model"]
    b = load_checkpoint(split / "checkpoint.pt")["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_data_position_partitions_and_resumes() -> None:
    position = DataPosition(num_shards=3)
    assert position.next_index == [0, 1, 2]
    position.consumed([4, 7], num_loader_workers=3)  # shard 1 read 1, 4, 7
    assert position.next_index == [0, 10, 2] and position.phase == 1
    assert DataPosition.from_dict(position.to_dict()) == position


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_synth_endpoint_fails_after_the_retries(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            SYNTHLOC,
            "train",
            "cam",
            "--synth",
            f"127.0.0.1:{_free_port()}",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "run"),
            "--retries",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert "unreachable after 3 attempts" in done.stderr


def test_missing_and_corrupt_checkpoints_are_refused(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "none.pt"
    assert main(["export", str(missing), "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"{missing}: no such checkpoint" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    assert main(["export", str(corrupt), "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"{corrupt}: not a readable synthloc checkpoint" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "detector",
                "--coco",
                str(tmp_path / "x.json"),
                "--steps",
                "1",
                "--out",
                str(corrupt.parent),
                "--resume",
            ]
        )
        == 2
    )


def test_eval_refuses_a_dataset_with_unknown_categories(
    tmp_path: Path, data_root: Path, capsys
) -> None:
    run = tmp_path / "run"
    coco = data_root / "stardist" / "stardist.json"
    assert main(["train", "cam", "--coco", str(coco), "--steps", "2", "--out", str(run)]) == 0
    model = tmp_path / "cam.onnx"
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(model)]) == 0
    raw = json.loads(coco.read_text())
    raw["categories"].append({"id": 7, "name": "mitosis"})
    for image in raw["images"]:
        image["file_name"] = str(coco.parent / image["file_name"])
    other = tmp_path / "other.json"
    other.write_text(json.dumps(raw))
    assert main(["eval", "--model", str(model), "--coco", str(other)]) == 2
    err = capsys.readouterr().err
    assert "categories ['mitosis'] are unknown to the model, which localizes nucleus" in err


def _without_progress(stderr: str, lines: int = 80) -> str:
    """The last lines of a failed run's stderr, each progress bar reduced to its last state,
    so that a rank's own error is not pushed out by the bars of the other."""
    kept = [line.rsplit("\r", 1)[-1] for line in stderr.split("\n")]
    return "\n".join([line for line in kept if line.strip()][-lines:])


def test_the_same_command_runs_under_torchrun(tmp_path: Path, data_root: Path) -> None:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    run = tmp_path / "ddp"
    done = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            f"--master_port={_free_port()}",
            "-m",
            "synthloc.cli",
            "train",
            "detector",
            "--coco",
            str(data_root / "stardist" / "stardist.json"),
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--crop",
            "128",
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, _without_progress(done.stderr)
    state = load_checkpoint(run / "checkpoint.pt")
    # Two ranks, two shards, each read 3 steps x 2 samples of its own indices.
    assert state["data_position"] == {"num_shards": 2, "next_index": [12, 13], "phase": 0}
    assert _samples(run) == [[0, 2], [4, 6], [8, 10]]  # rank 0's log
