"""What every pod must be: settings it can read, hardened, bounded, drained in time, on GPUs
where the overlay says so."""

from __future__ import annotations

import re
from typing import Any

import pytest

from infer_service.settings import ENV_PREFIX as INFER_PREFIX
from infer_service.settings import InferSettings
from synth_service.settings import ENV_PREFIX as SYNTH_PREFIX
from synth_service.settings import SynthSettings
from synthloc.settings import env_names, load_settings
from tests.k8s.conftest import (
    RUN_AS,
    VARIANTS,
    all_containers,
    container,
    effective_env,
    env_names_of,
    find,
    one,
    pod_spec,
    secret_env,
    workloads,
)

PREFIXES = {SYNTH_PREFIX: SynthSettings, INFER_PREFIX: InferSettings}


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_maps_name_only_settings_fields(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    for name, prefix in (("synthloc-synth", SYNTH_PREFIX), ("synthloc-infer", INFER_PREFIX)):
        data = one(resources, "ConfigMap", name)["data"]
        assert data, name
        assert set(data) <= set(env_names(PREFIXES[prefix], prefix)), name
        load_settings(PREFIXES[prefix], prefix, environ=data)  # every value parses to its type


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_container_gets_an_unknown_settings_variable(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    for workload in workloads(resources):
        for c in all_containers(workload):
            for var in env_names_of(c, resources):
                for prefix, cls in PREFIXES.items():
                    if var.startswith(prefix):
                        assert var in env_names(cls, prefix), f"{c['name']}: {var}"


def test_env_name_check_can_fail() -> None:
    assert "SYNTHLOC_INFER_TLS_CERTIFICATE" not in env_names(InferSettings, INFER_PREFIX)
    assert "SYNTHLOC_INFER_TLS_CERT" in env_names(InferSettings, INFER_PREFIX)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_is_hardened_and_bounded(variant: str, rendered: dict) -> None:
    for workload in workloads(rendered[variant]):
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == RUN_AS
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in all_containers(workload):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), c["name"]
            # With a read-only root, anything the container writes goes to a volume.
            for mount in c.get("volumeMounts", []):
                volume = volumes[mount["name"]]
                assert {"emptyDir", "persistentVolumeClaim", "secret"} & set(volume)
        main = spec["containers"][0]
        tmp = [m for m in main["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], workload["metadata"]["name"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_persistent_volume_claims_exist_and_readers_mount_read_only(
    variant: str, rendered: dict
) -> None:
    resources = rendered[variant]
    claims = {c["metadata"]["name"] for c in find(resources, "PersistentVolumeClaim")}
    writers = {"synthloc-data-fetch": {"synthloc-data"}, "synthloc-train": {"synthloc-models"}}
    for workload in workloads(resources):
        name = workload["metadata"]["name"]
        for volume in pod_spec(workload)["volumes"]:
            claim = volume.get("persistentVolumeClaim")
            if claim is None:
                continue
            assert claim["claimName"] in claims
            read_only = claim["claimName"] not in writers.get(name, set())
            assert claim.get("readOnly", False) is read_only, (name, claim)


@pytest.mark.parametrize("variant", VARIANTS)
def test_paths_in_settings_lie_on_the_mounted_volumes(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    mounts = {}
    for workload in workloads(resources):
        c = pod_spec(workload)["containers"][0]
        mounts[workload["metadata"]["name"]] = {m["mountPath"] for m in c["volumeMounts"]}
    synth = effective_env(
        resources, container(one(resources, "Deployment", "synthloc-synth"), "synth")
    )
    infer = effective_env(
        resources, container(one(resources, "Deployment", "synthloc-infer"), "infer")
    )
    fetch = container(one(resources, "Job", "synthloc-data-fetch"), "fetch")
    data_root = fetch["args"][fetch["args"].index("--root") + 1]
    assert data_root in mounts["synthloc-data-fetch"] and data_root in mounts["synthloc-synth"]
    assert synth[SYNTH_PREFIX + "LIBRARY"].startswith(data_root + "/mnfinder/")
    assert infer[INFER_PREFIX + "MODELS"] == "/models/repository"
    assert "/models" in mounts["synthloc-infer"] and "/models" in mounts["synthloc-train"]


_SLEEP = re.compile(r"^sleep$")


@pytest.mark.parametrize("variant", VARIANTS)
def test_termination_grace_outlasts_the_servers_drain(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    for name, prefix in (("synthloc-synth", SYNTH_PREFIX), ("synthloc-infer", INFER_PREFIX)):
        deployment = one(resources, "Deployment", name)
        c = pod_spec(deployment)["containers"][0]
        settings = load_settings(PREFIXES[prefix], prefix, environ=effective_env(resources, c))
        command = c["lifecycle"]["preStop"]["exec"]["command"]
        assert _SLEEP.match(command[0])
        pause = float(command[1])
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace > pause + settings.grace_seconds, name


def _gpu_limit(c: dict) -> int:
    return int(c["resources"]["limits"].get("nvidia.com/gpu", 0))


def test_cpu_overlay_asks_for_no_gpu(rendered: dict) -> None:
    for workload in workloads(rendered["cpu"]):
        spec = pod_spec(workload)
        assert not any(_gpu_limit(c) for c in all_containers(workload))
        assert "nodeSelector" not in spec and "tolerations" not in spec
    infer = one(rendered["cpu"], "Deployment", "synthloc-infer")
    assert container(infer, "infer")["image"] == "synthloc/infer:0.1.0"
    env = effective_env(rendered["cpu"], container(infer, "infer"))
    assert env[INFER_PREFIX + "DEVICE"] == "cpu"


@pytest.mark.parametrize("variant", ["gpu", "gpu-tls"])
def test_gpu_overlay_puts_inference_and_training_on_gpus(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    infer = one(resources, "Deployment", "synthloc-infer")
    train = one(resources, "Job", "synthloc-train")
    for workload, name in ((infer, "infer"), (train, "train")):
        c = container(workload, name)
        assert _gpu_limit(c) == 1
        assert (
            c["resources"]["requests"]["nvidia.com/gpu"]
            == c["resources"]["limits"]["nvidia.com/gpu"]
        )
        spec = pod_spec(workload)
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
    assert all(c["image"] == "synthloc/infer-gpu:0.1.0" for c in all_containers(infer))
    settings = load_settings(
        InferSettings, INFER_PREFIX, environ=effective_env(resources, container(infer, "infer"))
    )
    assert settings.device == "cuda" and settings.require_gpu is True
    env = effective_env(resources, container(train, "train"))
    assert env["DEVICE"] == "cuda"
    assert int(env["NPROC_PER_NODE"]) == _gpu_limit(container(train, "train"))
    synth = pod_spec(one(resources, "Deployment", "synthloc-synth"))
    assert not any(_gpu_limit(c) for c in synth["containers"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_images_are_pinned(variant: str, rendered: dict) -> None:
    for workload in workloads(rendered[variant]):
        for c in all_containers(workload):
            repo, _, tag = c["image"].partition(":")
            assert re.fullmatch(r"synthloc/(synth|infer|infer-gpu|train|train-cpu)", repo)
            assert re.fullmatch(r"\d+\.\d+\.\d+", tag), c["image"]


def _secret_mount(workload: dict, c: dict, volume: str, secret: str) -> str:
    """Where `secret` is mounted read-only in container c as `volume` (asserted)."""
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == volume]
    (found,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == volume]
    assert found["secret"]["secretName"] == secret and mount["readOnly"] is True
    return mount["mountPath"]


def _tls_server(
    resources: list, name: str, settings_cls: type, prefix: str, secret: str
) -> tuple[dict, dict, Any]:
    """(workload, container, settings) of a server whose TLS settings point at its mounted
    `secret` (asserted)."""
    workload = one(resources, "Deployment", f"synthloc-{name}")
    c = container(workload, name)
    settings = load_settings(settings_cls, prefix, environ=effective_env(resources, c))
    path = _secret_mount(workload, c, "tls", secret)
    assert str(settings.tls_cert) == path + "/tls.crt"
    assert str(settings.tls_key) == path + "/tls.key"
    return workload, c, settings


def test_tls_component_wires_the_secret_into_the_settings(rendered: dict) -> None:
    resources = rendered["gpu-tls"]
    infer, _, _ = _tls_server(resources, "infer", InferSettings, INFER_PREFIX, "synthloc-infer-tls")
    assert pod_spec(infer)["securityContext"]["fsGroup"] == RUN_AS  # group-readable Secret
    plain = container(one(rendered["gpu"], "Deployment", "synthloc-infer"), "infer")
    assert not any(e["name"].startswith(INFER_PREFIX + "TLS") for e in plain["env"])


def test_synth_tls_component_wires_both_ends_and_the_shared_token(
    rendered: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered["cpu-synth-tls"]
    _, c, settings = _tls_server(
        resources, "synth", SynthSettings, SYNTH_PREFIX, "synthloc-synth-tls"
    )
    assert str(settings.tls_client_ca) == str(settings.tls_cert.parent / "ca.crt")  # mutual TLS
    token = ("synthloc-synth-token", "token")
    assert secret_env(c) == {SYNTH_PREFIX + "AUTH_TOKEN": token}
    assert SYNTH_PREFIX + "AUTH_TOKEN" in env_names(SynthSettings, SYNTH_PREFIX)

    # The trainer: what `synthloc train` reads from its environment points into its mount.
    train = one(resources, "Job", "synthloc-train")
    t = container(train, "train")
    path = _secret_mount(train, t, "synth-tls", "synthloc-train-tls")
    assert secret_env(t) == {"SYNTHLOC_TRAIN_SYNTH_TOKEN": token}
    env = effective_env(resources, t)
    for name, value in {**env, "SYNTHLOC_TRAIN_SYNTH_TOKEN": "from-the-secret"}.items():
        monkeypatch.setenv(name, value)
    from synthloc.cli import build_parser

    args = build_parser().parse_args(
        ["train", "detector", "--synth", "x:1", "--steps", "1", "--out", "r"]
    )
    assert args.synth_token == "from-the-secret"
    assert str(args.synth_tls_ca) == path + "/ca.crt"
    assert str(args.synth_tls_cert) == path + "/tls.crt"
    assert str(args.synth_tls_key) == path + "/tls.key"
    plain = container(one(rendered["cpu"], "Job", "synthloc-train"), "train")
    assert not secret_env(plain) and "synth-tls" not in {m["name"] for m in plain["volumeMounts"]}
