"""Every rendered resource against the Kubernetes API schemas (offline, strict), and the
ServiceMonitor custom resource against a schema of its own."""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest

from tests.k8s.conftest import VARIANTS, find, one

# The oldest version the manifests need (native gRPC probes and the Job controller-uid label are
# GA in 1.27) and the newest one kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
CUSTOM_KINDS = {"ServiceMonitor"}

# The part of monitoring.coreos.com/v1 ServiceMonitor that k8s/ uses, with the Prometheus
# Operator CRD's own types and patterns; anything else is refused, like --strict does.
_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": _LABELS,
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "additionalProperties": False,
                    "properties": {"matchLabels": _LABELS},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                        },
                    },
                },
            },
        },
    },
}


def _seconds(duration: str) -> int:
    return int(duration.rstrip("s"))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_resources_validate_strictly(variant: str, version: str, rendered: dict) -> None:
    checked = 0
    for resource in rendered[variant]:
        if resource["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(resource, version, strict=True)
        checked += 1
    assert checked >= 20


def test_strict_validation_catches_a_misspelt_field(rendered: dict) -> None:
    deployment = copy.deepcopy(one(rendered["cpu"], "Deployment", "synthloc-infer"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_monitors_match_their_schema(variant: str, rendered: dict) -> None:
    monitors = find(rendered[variant], "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"synthloc-synth", "synthloc-infer"}
    for monitor in monitors:
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
        for endpoint in monitor["spec"]["endpoints"]:
            assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])


def test_service_monitor_schema_refuses_what_the_crd_refuses(rendered: dict) -> None:
    monitor = copy.deepcopy(one(rendered["cpu"], "ServiceMonitor", "synthloc-synth"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    monitor["spec"]["endpoints"][0] = {"targetPort": "metrics"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
