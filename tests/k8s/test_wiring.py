"""Selectors, ports and names agree across the rendered resources and with the servers' settings."""

from __future__ import annotations

import pytest

from infer_service.settings import ENV_PREFIX as INFER_PREFIX
from infer_service.settings import InferSettings
from synth_service.settings import ENV_PREFIX as SYNTH_PREFIX
from synth_service.settings import SynthSettings
from synthloc.settings import load_settings
from tests.k8s.conftest import (
    VARIANTS,
    component_of,
    container,
    effective_env,
    find,
    one,
    pod_spec,
    selects,
    workloads,
)

SERVERS = {
    "synthloc-synth": ("synth", SynthSettings, SYNTH_PREFIX),
    "synthloc-infer": ("infer", InferSettings, INFER_PREFIX),
}


def pod_labels(workload: dict) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def settings_of(resources: list[dict], name: str) -> object:
    """What the server in Deployment `name` will run with: the loader reads the pod's env."""
    container_name, cls, prefix = SERVERS[name]
    c = container(one(resources, "Deployment", name), container_name)
    env = effective_env(resources, c)
    if name == "synthloc-synth":
        # The one value that comes from the pod's CPU limit (resourceFieldRef, whole cores).
        env[prefix + "WORKERS"] = c["resources"]["limits"]["cpu"]
    return load_settings(cls, prefix, environ=env)


def named_ports(c: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c["ports"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_deployment_selectors_match_their_pods(variant: str, rendered: dict) -> None:
    for d in find(rendered[variant], "Deployment"):
        assert selects(d["spec"]["selector"]["matchLabels"], pod_labels(d))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_service_selects_one_workload_and_its_named_ports(
    variant: str, rendered: dict
) -> None:
    resources = rendered[variant]
    for service in find(resources, "Service"):
        targets = [
            w for w in workloads(resources) if selects(service["spec"]["selector"], pod_labels(w))
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        ports = {}
        for c in pod_spec(targets[0])["containers"]:
            ports.update(named_ports(c))
        for port in service["spec"]["ports"]:
            assert ports[port["targetPort"]] == port["port"], port


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", sorted(SERVERS))
def test_ports_and_probes_agree_with_the_server_settings(
    variant: str, name: str, rendered: dict
) -> None:
    resources = rendered[variant]
    settings = settings_of(resources, name)
    c = container(one(resources, "Deployment", name), SERVERS[name][0])
    assert settings.host == "0.0.0.0"  # 127.0.0.1 would hide the server from probes and peers
    assert named_ports(c) == {"grpc": settings.port, "metrics": settings.metrics_port}
    service = {p["name"]: p["port"] for p in one(resources, "Service", name)["spec"]["ports"]}
    assert service == {"grpc": settings.port, "metrics": settings.metrics_port}
    tls = {"tls": "synthloc-infer", "synth-tls": "synthloc-synth"}.get(
        component_of(variant)
    ) == name
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = c[probe]["tcpSocket" if tls else "grpc"]
        assert check["port"] == settings.port, probe


def test_synthesis_workers_follow_the_cpu_limit(rendered: dict) -> None:
    for variant in VARIANTS:
        settings = settings_of(rendered[variant], "synthloc-synth")
        assert settings.workers == 4
        c = container(one(rendered[variant], "Deployment", "synthloc-synth"), "synth")
        (workers,) = [e for e in c["env"] if e["name"] == SYNTH_PREFIX + "WORKERS"]
        ref = workers["valueFrom"]["resourceFieldRef"]
        assert (ref["containerName"], ref["resource"]) == ("synth", "limits.cpu")


@pytest.mark.parametrize("variant", VARIANTS)
def test_headless_synthesis_service_is_what_trainers_dial(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    service = one(resources, "Service", "synthloc-synth")
    assert service["spec"]["clusterIP"] == "None"
    train = effective_env(resources, container(one(resources, "Job", "synthloc-train"), "train"))
    namespace = service["metadata"]["namespace"]
    port = settings_of(resources, "synthloc-synth").port
    assert train["SYNTH_TARGET"] == f"dns:///synthloc-synth.{namespace}.svc.cluster.local:{port}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_disruption_budgets_and_autoscalers_point_at_deployments(
    variant: str, rendered: dict
) -> None:
    resources = rendered[variant]
    deployments = {d["metadata"]["name"]: d for d in find(resources, "Deployment")}
    for pdb in find(resources, "PodDisruptionBudget"):
        matched = [
            d
            for d in deployments.values()
            if selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(d))
        ]
        assert len(matched) == 1
    scaled = set()
    for hpa in find(resources, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        # The HPA owns the count; a replicas field would reset it on every apply.
        assert "replicas" not in deployments[target["name"]]["spec"]
        scaled.add(target["name"])
    assert scaled == set(deployments)


def _policy(resources: list[dict], name: str) -> dict:
    return one(resources, "NetworkPolicy", name)["spec"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_policies(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    deny = _policy(resources, "synthloc-default-deny-ingress")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    synth, infer = (
        settings_of(resources, "synthloc-synth"),
        settings_of(resources, "synthloc-infer"),
    )
    trainer = pod_labels(one(resources, "Job", "synthloc-train"))
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    # Synthesis gRPC: trainers only; its metrics: the monitoring namespace only.
    grpc_rule, metrics_rule = _policy(resources, "synthloc-synth")["ingress"]
    assert [p["port"] for p in grpc_rule["ports"]] == [synth.port]
    assert selects(grpc_rule["from"][0]["podSelector"]["matchLabels"], trainer)
    others = [w for w in workloads(resources) if w["metadata"]["name"] != "synthloc-train"]
    assert not any(
        selects(grpc_rule["from"][0]["podSelector"]["matchLabels"], pod_labels(w)) for w in others
    )
    assert [p["port"] for p in metrics_rule["ports"]] == [synth.metrics_port]
    assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": monitoring}}]
    # Inference gRPC: labelled client namespaces only; metrics: monitoring only.
    grpc_rule, metrics_rule = _policy(resources, "synthloc-infer")["ingress"]
    assert [p["port"] for p in grpc_rule["ports"]] == [infer.port]
    assert grpc_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"synthloc.io/inference-client": "true"}}}
    ]
    assert [p["port"] for p in metrics_rule["ports"]] == [infer.metrics_port]
    assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": monitoring}}]
    # Every policy applies to some workload's pods (a typo in a selector would open nothing).
    for policy in find(resources, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        assert any(selects(selector, pod_labels(w)) for w in workloads(resources))


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_monitors_scrape_the_metrics_ports(variant: str, rendered: dict) -> None:
    resources = rendered[variant]
    for monitor in find(resources, "ServiceMonitor"):
        namespace = monitor["metadata"]["namespace"]
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == [namespace]
        services = [
            s
            for s in find(resources, "Service")
            if s["metadata"]["namespace"] == namespace
            and selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert len(services) == 1
        service = services[0]
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        settings = settings_of(resources, service["metadata"]["name"])
        for endpoint in monitor["spec"]["endpoints"]:
            assert ports[endpoint["port"]] == settings.metrics_port
            assert endpoint["path"] == "/metrics"
