"""The Grafana dashboard asks Prometheus only for metrics the services really export."""

from __future__ import annotations

import json
import re

import pytest

from infer_service.metrics import InferMetrics
from synth_service.metrics import SynthMetrics
from tests.k8s.conftest import K8S

DASHBOARD = K8S / "grafana" / "synthloc.json"
# PromQL words that look like metric names but are functions, operators or keywords.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported_series() -> dict[str, str]:
    """Every series name the two metric registries can expose -> its family name."""
    series = {}
    for registry in (SynthMetrics().registry, InferMetrics().registry):
        for family in registry.collect():
            for suffix in _SUFFIXES[family.type]:
                series[family.name + suffix] = family.name
    return series


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (or a Grafana label_values() query)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and other strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b\d+(ms|[smhdwy])\b", "", expr)  # durations (offset 5m)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\blabel_values\(\s*([A-Za-z_:][\w:]*)\s*,[^)]*\)", r"\1", expr)
    found = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", expr):
        word, rest = match.group(0), expr[match.end() :].lstrip()
        if not rest.startswith("(") and word.lower() not in _KEYWORDS:
            found.add(word)
    return found


def queries(dashboard: dict) -> list[str]:
    """Every PromQL expression of the panels and the template variables."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, model) (rate(synthloc_infer_request_seconds_bucket"
        '{namespace="$namespace",code!="OK"}[5m]))) / on(pod) group_left up offset 5m'
    )
    assert metric_names(expr) == {"synthloc_infer_request_seconds_bucket", "up"}
    assert metric_names("label_values(synthloc_synth_active_streams, namespace)") == {
        "synthloc_synth_active_streams"
    }


def test_every_dashboard_metric_is_exported(dashboard: dict) -> None:
    series = exported_series()
    used = set().union(*(metric_names(q) for q in queries(dashboard)))
    assert used, "no queries found"
    assert sorted(used - set(series)) == []
    assert "synthloc_synth_images_streamed" not in series  # counters are read as *_total


def test_every_exported_metric_has_a_panel(dashboard: dict) -> None:
    series = exported_series()
    used = set().union(*(metric_names(q) for q in queries(dashboard)))
    assert {series[s] for s in used} == set(series.values())


def test_panels_are_wired_to_the_datasource_variable(dashboard: dict) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "namespace"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'namespace="$namespace"' in target["expr"]
