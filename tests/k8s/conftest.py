"""Rendered overlays and small lookups over them, shared by the k8s tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.render import Resource, build

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("cpu", "gpu")
RUN_AS = 10001  # the numeric USER of every image in docker/ and runAsUser of every pod
# The variants the tests render: each overlay, the gpu overlay with the TLS component, and
# the cpu overlay with the synthesis TLS component.
VARIANTS = (*OVERLAYS, "gpu-tls", "cpu-synth-tls")


def write_variant(name: str, into: Path) -> Path:
    """A kustomization directory that renders `name` (an overlay, or overlay-component)."""
    # Overlay names have no dash; component names may.
    if name in OVERLAYS:
        return K8S / "overlays" / name
    overlay, component = name.split("-", 1)
    into.mkdir(parents=True, exist_ok=True)
    # kustomize refuses absolute paths here, so point at the repository relatively.
    rel = Path(os.path.relpath(K8S, into))
    (into / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {rel / 'overlays' / overlay}\n"
        f"components:\n  - {rel / 'components' / component}\n"
    )
    return into


@pytest.fixture(scope="session")
def variant_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Kustomization directory per variant."""
    root = tmp_path_factory.mktemp("kustomize")
    return {name: write_variant(name, root / name) for name in VARIANTS}


@pytest.fixture(scope="session")
def rendered(variant_dirs: dict[str, Path]) -> dict[str, list[Resource]]:
    """Rendered resources per variant."""
    return {name: build(path) for name, path in variant_dirs.items()}


def find(resources: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    """Resources of a kind (and name, ignoring a ConfigMap's hash suffix)."""
    found = []
    for r in resources:
        if r["kind"] != kind:
            continue
        actual = r["metadata"]["name"]
        if kind == "ConfigMap" and name is not None:
            actual = actual.rsplit("-", 1)[0]
        if name is None or actual == name:
            found.append(r)
    return found


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    """The one resource of that kind and name."""
    found = find(resources, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: Resource) -> dict[str, Any]:
    """The pod spec of a Deployment or Job."""
    return workload["spec"]["template"]["spec"]


def container(workload: Resource, name: str) -> dict[str, Any]:
    """One container of a workload by name."""
    matches = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    assert len(matches) == 1, f"{workload['metadata']['name']} has no container {name}"
    return matches[0]


def effective_env(resources: list[Resource], c: dict[str, Any]) -> dict[str, str]:
    """The literal environment a container sees: its ConfigMaps, then its own `value`s."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        matches = [r for r in find(resources, "ConfigMap") if r["metadata"]["name"] == ref]
        assert len(matches) == 1, f"envFrom names ConfigMap {ref}, which is not rendered"
        env.update(matches[0]["data"])
    env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    return env


def component_of(variant: str) -> str:
    """The component a variant adds to its overlay ('' for none)."""
    return variant.split("-", 1)[1] if "-" in variant else ""


def secret_env(c: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The variables a container takes from Secrets: name -> (secret, key)."""
    refs = {
        e["name"]: e["valueFrom"].get("secretKeyRef") for e in c.get("env", []) if "valueFrom" in e
    }
    return {name: (ref["name"], ref["key"]) for name, ref in refs.items() if ref}


def env_names_of(c: dict[str, Any], resources: list[Resource]) -> set[str]:
    """Every variable name a container gets, literal or not."""
    return set(effective_env(resources, c)) | {e["name"] for e in c.get("env", [])}


def all_containers(workload: Resource) -> list[dict[str, Any]]:
    """Init containers and containers of a workload."""
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(resources: list[Resource]) -> list[Resource]:
    """Deployments and Jobs."""
    return [r for r in resources if r["kind"] in ("Deployment", "Job")]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects these labels."""
    return all(labels.get(k) == v for k, v in selector.items())
