"""The Indexed training Job: its topology, and its script run with stand-ins for torchrun and
synthloc."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from synthloc.cli import build_parser
from tests.k8s.conftest import (
    VARIANTS,
    all_containers,
    container,
    effective_env,
    one,
    pod_spec,
    selects,
    workloads,
)
from training.cli import SECURITY_FLAGS, env_name

# Stands in for torchrun and synthloc: records its argv, then makes what the real one would.
FAKE = """#!{python}
import json, os, sys
from pathlib import Path
with open(os.environ["CALLS"], "a") as log:
    log.write(json.dumps([Path(sys.argv[0]).name, *sys.argv[1:]]) + "\\n")
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
if Path(sys.argv[0]).name == "torchrun":
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint.pt").write_bytes(b"weights")
else:
    out.write_bytes(b"onnx")
"""


def script_of(resources: list[dict]) -> str:
    c = container(one(resources, "Job", "synthloc-train"), "train")
    assert c["command"] == ["/bin/sh", "-c"]
    return c["args"][0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_indexed_job_topology(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    job = one(resources, "Job", "synthloc-train")
    env = effective_env(resources, container(job, "train"))
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["suspend"] is True
    assert spec["completions"] == spec["parallelism"] == int(env["NNODES"])
    service = one(resources, "Service", pod_spec(job)["subdomain"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert selects(service["spec"]["selector"], job["spec"]["template"]["metadata"]["labels"])
    assert env["RENDEZVOUS_HOST"] == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    (port,) = service["spec"]["ports"]
    assert int(env["RENDEZVOUS_PORT"]) == port["port"]
    assert container(job, "train")["ports"] == [
        {"name": port["targetPort"], "containerPort": port["port"], "protocol": "TCP"}
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_script_uses_exactly_the_variables_it_is_given(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    job = one(resources, "Job", "synthloc-train")
    c = container(job, "train")
    script = script_of(resources)
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", script))
    assigned = set(re.findall(r"^\s*([a-z_]+)=", script, re.MULTILINE))
    given = set(effective_env(resources, c)) | {e["name"] for e in c["env"]}
    # `synthloc train` reads its security settings from the environment itself.
    given -= {env_name(flag) for flag in SECURITY_FLAGS}
    # The Job controller sets JOB_COMPLETION_INDEX in every pod of an Indexed Job.
    assert used - assigned == given | {"JOB_COMPLETION_INDEX"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_shell_scripts_parse(variant: str, rendered: dict) -> None:
    for workload in workloads(rendered[variant]):
        for c in all_containers(workload):
            if c.get("command", [])[:2] == ["/bin/sh", "-c"]:
                done = subprocess.run(["sh", "-n", "-c", c["args"][0]], capture_output=True)
                assert done.returncode == 0, (c["name"], done.stderr)


def run_script(script: str, env: dict[str, str], tmp: Path, index: int) -> list[list[str]]:
    """Run the Job's script as pod `index` would; return the commands it ran."""
    bin_dir, calls = tmp / "bin", tmp / "calls.jsonl"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("torchrun", "synthloc"):
        fake = bin_dir / name
        fake.write_text(FAKE.format(python=sys.executable))
        fake.chmod(0o755)
    calls.write_text("")
    full = {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "JOB_UID": "0f9c-uid",
        "JOB_COMPLETION_INDEX": str(index),
        "MODELS_DIR": str(tmp / "models"),
        "DATA_DIR": str(tmp / "data"),
    }
    done = subprocess.run(["sh", "-c", script], env=full, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in calls.read_text().splitlines()]


def after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_script_trains_resumes_and_exports_once(rendered: dict, tmp_path: Path) -> None:
    torch_run = pytest.importorskip("torch.distributed.run")
    resources = rendered["gpu"]
    env = effective_env(resources, container(one(resources, "Job", "synthloc-train"), "train"))
    script = script_of(resources)
    run = tmp_path / "models" / "runs" / "0f9c-uid"

    (train, export) = run_script(script, env, tmp_path, index=0)
    launcher = torch_run.get_args_parser().parse_args(train[1:])
    assert (launcher.nnodes, launcher.nproc_per_node, launcher.node_rank) == ("2", "1", 0)
    assert (launcher.master_addr, launcher.master_port) == (
        "synthloc-train-0.synthloc-train",
        29500,
    )
    assert launcher.module and launcher.training_script == "synthloc.cli"
    args = build_parser().parse_args(launcher.training_script_args)
    assert (args.command, args.task, args.synth) == ("train", "detector", env["SYNTH_TARGET"])
    assert (args.steps, args.batch_size, args.device, args.workers) == (20000, 64, "cuda", 4)
    assert args.out == run and args.resume is False
    args = build_parser().parse_args(export[1:])
    assert args.command == "export" and args.checkpoint == run / "checkpoint.pt"
    assert args.parity_coco == tmp_path / "data" / "stardist" / "stardist.json"
    (version_dir,) = (tmp_path / "models" / "repository" / "detector").iterdir()
    assert re.fullmatch(r"\d{14}", version_dir.name)  # numeric: served newest first
    assert (version_dir / "model.onnx").read_bytes() == b"onnx"
    assert (run / "EXPORTED").read_text().strip() == version_dir.name
    assert not any((tmp_path / "models" / "staging").iterdir())

    # A restarted pod resumes from the checkpoint and never exports twice.
    (train,) = run_script(script, env, tmp_path, index=0)
    launcher = torch_run.get_args_parser().parse_args(train[1:])
    assert build_parser().parse_args(launcher.training_script_args).resume is True


def test_other_ranks_only_train_and_model_version_can_be_named(
    rendered: dict, tmp_path: Path
) -> None:
    resources = rendered["cpu"]
    env = effective_env(resources, container(one(resources, "Job", "synthloc-train"), "train"))
    (train,) = run_script(script_of(resources), env, tmp_path / "rank1", index=1)
    assert after(train, "--device") == "cpu" and "--node-rank=1" in train
    (_, export) = run_script(
        script_of(resources), {**env, "MODEL_VERSION": "7"}, tmp_path / "rank0", index=0
    )
    assert (tmp_path / "rank0/models/repository/detector/7/model.onnx").is_file()
    assert export[export.index("--out") + 1].endswith("staging/0f9c-uid/model.onnx")
