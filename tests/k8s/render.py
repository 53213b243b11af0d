"""A small kustomize: exactly the features k8s/ uses, so the tests render overlays offline.

Supported kustomization fields: resources (files and directories), components, namespace,
configMapGenerator (envs and literals; behavior create or merge; name suffix hash), patches
(JSON 6902 operation lists with a kind/name target) and images (newName, newTag). Any other
field is an error rather than silently ignored. Where kubectl is installed, the tests check that
this renders what `kubectl kustomize` renders.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "configMapGenerator",
    "patches",
    "images",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
# Generated ConfigMaps get their hash suffix only once the whole build is done; this key marks
# them until then (it never reaches the output).
_GENERATED = "__generated__"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KustomizeError(ValueError):
    """A kustomization this renderer does not support, or one that is wrong."""


def build(path: Path) -> list[Resource]:
    """Render the kustomization in directory `path`, like `kubectl kustomize path`."""
    resources = _build(Path(path), component=False)
    _apply_hash_suffixes(resources)
    return resources


def _load_kustomization(path: Path, component: bool) -> dict[str, Any]:
    spec = yaml.safe_load((path / "kustomization.yaml").read_text()) or {}
    unknown = set(spec) - KUSTOMIZATION_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: unsupported fields {sorted(unknown)}")
    expected = "Component" if component else "Kustomization"
    if spec.get("kind", "Kustomization") != expected:
        raise KustomizeError(f"{path}: kind {spec.get('kind')!r}, expected {expected}")
    return spec


def _build(path: Path, component: bool, into: list[Resource] | None = None) -> list[Resource]:
    spec = _load_kustomization(path, component)
    resources = [] if into is None else into
    for entry in spec.get("resources", []):
        target = path / entry
        if target.is_dir():
            resources.extend(_build(target, component=False))
        else:
            resources.extend(d for d in yaml.safe_load_all(target.read_text()) if d)
    for entry in spec.get("components", []):
        _build(path / entry, component=True, into=resources)
    for generator in spec.get("configMapGenerator", []):
        _generate_config_map(path, generator, resources)
    for patch in spec.get("patches", []):
        _apply_patch(path, patch, resources)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        _set_image(resources, image)
    return resources


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and lines starting with # are skipped."""
    data: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise KustomizeError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        data[key] = value
    return data


def _generate_config_map(path: Path, generator: dict[str, Any], out: list[Resource]) -> None:
    unknown = set(generator) - {"name", "envs", "literals", "behavior"}
    if unknown:
        raise KustomizeError(f"{path}: unsupported configMapGenerator fields {sorted(unknown)}")
    data: dict[str, str] = {}
    for env_file in generator.get("envs", []):
        data.update(read_env_file(path / env_file))
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    name, behavior = generator["name"], generator.get("behavior", "create")
    existing = [r for r in out if r["kind"] == "ConfigMap" and r["metadata"]["name"] == name]
    if behavior == "merge":
        if len(existing) != 1 or not existing[0].get(_GENERATED):
            raise KustomizeError(f"{path}: no generated ConfigMap {name!r} to merge into")
        existing[0]["data"].update(data)
    elif behavior == "create":
        if existing:
            raise KustomizeError(f"{path}: ConfigMap {name!r} already exists")
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": data,
                _GENERATED: True,
            }
        )
    else:
        raise KustomizeError(f"{path}: unsupported behavior {behavior!r}")


def _apply_patch(path: Path, patch: dict[str, Any], resources: list[Resource]) -> None:
    if set(patch) != {"path", "target"} or set(patch["target"]) - {"kind", "name"}:
        raise KustomizeError(f"{path}: a patch needs exactly path and target (kind, name)")
    operations = yaml.safe_load((path / patch["path"]).read_text())
    if not isinstance(operations, list):
        raise KustomizeError(f"{path / patch['path']}: not a JSON 6902 operation list")
    target = patch["target"]
    matched = [
        r
        for r in resources
        if r["kind"] == target.get("kind", r["kind"])
        and r["metadata"]["name"] == target.get("name", r["metadata"]["name"])
    ]
    if not matched:
        raise KustomizeError(f"{path}: patch target {target} matches no resource")
    for resource in matched:
        for operation in operations:
            apply_operation(resource, operation)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"not a JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_operation(document: Any, operation: dict[str, Any]) -> None:
    """Apply one RFC 6902 add, replace or remove operation in place."""
    op, *parents, last = [operation["op"], *_pointer(operation["path"])]
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(operation.get("value"))
    if op not in ("add", "replace", "remove"):
        raise KustomizeError(f"unsupported patch operation {op!r}")
    if isinstance(node, list):
        if op == "add":
            node.insert(len(node) if last == "-" else int(last), value)
        elif op == "replace":
            node[int(last)] = value
        else:
            del node[int(last)]
    elif op == "add":
        node[last] = value
    elif last not in node:
        raise KustomizeError(f"{op} {operation['path']}: no such field")
    elif op == "replace":
        node[last] = value
    else:
        del node[last]


def _containers(node: Any) -> list[dict[str, Any]]:
    """Every container and init container anywhere in a resource."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found.extend(value)
            else:
                found.extend(_containers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_containers(item))
    return found


def _set_image(resources: list[Resource], image: dict[str, str]) -> None:
    name = image["name"]
    for resource in resources:
        for container in _containers(resource):
            current = container.get("image", "")
            repo, _, tag = current.partition(":")
            if repo != name:
                continue
            container["image"] = f"{image.get('newName', repo)}:{image.get('newTag', tag)}"


def config_map_hash(config_map: Resource) -> str:
    """kustomize's name suffix: sha256 of the canonical JSON, first 10 hex digits, re-lettered.

    kustomize looks the name up with a path its lookup does not split, so it always hashes an
    empty name; so does this, or the suffixes would differ from kubectl's.
    """
    encoded = {"kind": "ConfigMap", "name": "", "data": config_map.get("data", {})}
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Go's encoder escapes these three; match it so the hashes agree.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _apply_hash_suffixes(resources: list[Resource]) -> None:
    renames: dict[str, str] = {}
    for resource in resources:
        if resource.pop(_GENERATED, False):
            old = resource["metadata"]["name"]
            renames[old] = f"{old}-{config_map_hash(resource)}"
            resource["metadata"]["name"] = renames[old]
    for resource in resources:
        _rename_config_map_refs(resource, renames)


def _rename_config_map_refs(node: Any, renames: dict[str, str]) -> None:
    if isinstance(node, list):
        for item in node:
            _rename_config_map_refs(item, renames)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("configMapRef", "configMapKeyRef", "configMap") and isinstance(value, dict):
            if value.get("name") in renames:
                value["name"] = renames[value["name"]]
        else:
            _rename_config_map_refs(value, renames)
