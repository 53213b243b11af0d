"""The small kustomize in tests/k8s/render.py: its features, its refusals, and kubectl agreement."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.k8s.conftest import VARIANTS
from tests.k8s.render import (
    KustomizeError,
    apply_operation,
    build,
    config_map_hash,
    read_env_file,
)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_config_map_hash_matches_kustomize() -> None:
    # kubectl kustomize (kustomize v5.5.0) names a generator with literal A=1 "x-89g4tffbfk".
    cm = {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"A": "1"}}
    assert config_map_hash(cm) == "89g4tffbfk"
    assert config_map_hash({**cm, "data": {"A": "2"}}) != "89g4tffbfk"


def test_env_file_skips_comments_and_keeps_empty_values(tmp_path: Path) -> None:
    env = tmp_path / "a.env"
    env.write_text("# comment\n\nA=1\nB=\nC=x=y\n")
    assert read_env_file(env) == {"A": "1", "B": "", "C": "x=y"}
    env.write_text("NOT AN ASSIGNMENT\n")
    with pytest.raises(KustomizeError, match=r"a\.env:1"):
        read_env_file(env)


def test_json6902_add_replace_remove() -> None:
    doc = {"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}}
    apply_operation(doc, {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "Y"}})
    apply_operation(doc, {"op": "add", "path": "/spec/containers/0/env/0", "value": {"name": "W"}})
    apply_operation(doc, {"op": "replace", "path": "/spec/containers/0/name", "value": "b"})
    apply_operation(doc, {"op": "add", "path": "/spec/a~1b", "value": 1})
    apply_operation(doc, {"op": "remove", "path": "/spec/containers/0/env/1"})
    assert doc == {
        "spec": {"containers": [{"name": "b", "env": [{"name": "W"}, {"name": "Y"}]}], "a/b": 1}
    }
    with pytest.raises(KustomizeError, match="no such field"):
        apply_operation(doc, {"op": "replace", "path": "/spec/missing", "value": 1})
    with pytest.raises(KustomizeError, match="unsupported"):
        apply_operation(doc, {"op": "move", "path": "/spec/a~1b", "from": "/x"})


def test_build_generates_merges_patches_and_renames(tmp_path: Path) -> None:
    write(
        tmp_path / "base/kustomization.yaml",
        "namespace: ns\nresources: [app.yaml]\n"
        "configMapGenerator:\n  - name: cfg\n    envs: [cfg.env]\n",
    )
    write(tmp_path / "base/cfg.env", "A=1\n")
    write(
        tmp_path / "base/app.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  template:\n"
        "    spec:\n      containers:\n        - name: c\n          image: repo/app:1\n"
        "          envFrom: [{configMapRef: {name: cfg}}]\n"
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n",
    )
    write(
        tmp_path / "over/kustomization.yaml",
        "resources: [../base]\n"
        "configMapGenerator:\n  - name: cfg\n    behavior: merge\n    literals: [B=2]\n"
        "patches:\n  - path: p.yaml\n    target: {kind: Deployment, name: app}\n"
        "images:\n  - name: repo/app\n    newName: repo/app-gpu\n    newTag: '2'\n",
    )
    write(tmp_path / "over/p.yaml", "- op: add\n  path: /spec/replicas\n  value: 3\n")
    out = {r["kind"]: r for r in build(tmp_path / "over")}
    cm, app = out["ConfigMap"], out["Deployment"]
    assert cm["data"] == {"A": "1", "B": "2"}
    assert cm["metadata"] == {"name": f"cfg-{config_map_hash(cm)}", "namespace": "ns"}
    c = app["spec"]["template"]["spec"]["containers"][0]
    assert c["envFrom"][0]["configMapRef"]["name"] == cm["metadata"]["name"]
    assert c["image"] == "repo/app-gpu:2"
    assert app["spec"]["replicas"] == 3
    assert "namespace" not in out["Namespace"]["metadata"]


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("commonLabels: {a: b}\n", "unsupported fields"),
        (
            "patches:\n  - path: p.yaml\n    target: {kind: Job, name: nope}\n",
            "matches no resource",
        ),
        ("configMapGenerator:\n  - name: c\n    behavior: merge\n", "no generated ConfigMap"),
        ("kind: Component\n", "expected Kustomization"),
    ],
)
def test_unsupported_or_wrong_kustomizations_are_refused(
    tmp_path: Path, kustomization: str, message: str
) -> None:
    write(tmp_path / "kustomization.yaml", kustomization)
    write(tmp_path / "p.yaml", "- op: add\n  path: /x\n  value: 1\n")
    with pytest.raises(KustomizeError, match=message):
        build(tmp_path)


def _by_identity(resources: list[dict]) -> list[dict]:
    return sorted(resources, key=lambda r: (r["kind"], r["metadata"]["name"]))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("variant", VARIANTS)
def test_renders_what_kubectl_kustomize_renders(
    variant: str, variant_dirs: dict[str, Path], rendered: dict[str, list[dict]]
) -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(variant_dirs[variant])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    theirs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert _by_identity(rendered[variant]) == _by_identity(theirs)
