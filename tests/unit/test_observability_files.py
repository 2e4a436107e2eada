"""Structural checks of the monitoring files: collector pipelines, Grafana provisioning,
dashboards in sync with their generator, alert rules, compose images pinned."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from observability.grafana.build import build, render

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "observability"


def test_collector_pipelines_reference_defined_components() -> None:
    config = yaml.safe_load((OBS / "otel-collector.yaml").read_text())
    for name, pipeline in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], (name, kind, component)
    assert set(config["service"]["extensions"]) <= set(config["extensions"])
    protocols = config["receivers"]["otlp"]["protocols"]
    assert {"grpc", "http"} <= set(protocols)
    assert config["service"]["pipelines"]["metrics"]["processors"][0] == "memory_limiter"
    assert "batch" in config["service"]["pipelines"]["traces"]["processors"]


def test_dashboards_are_generated_and_their_datasources_resolve() -> None:
    provisioned = yaml.safe_load((OBS / "grafana/provisioning/datasources/victoriametrics.yaml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    generated = build()
    files = sorted((OBS / "grafana/dashboards").glob("*.json"))
    assert len(files) == len(generated) == 5
    for path in files:
        dashboard = json.loads(path.read_text())
        assert path.read_text() == render(generated[dashboard["uid"]]), (
            f"{path.name}: run python -m observability.grafana.build"
        )
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in uids
            assert panel["targets"] and all(t["datasource"]["uid"] in uids for t in panel["targets"])
    titles = {json.loads(p.read_text())["title"] for p in files}
    for word in ("Authentication", "API performance", "System health", "User activity", "Errors"):
        assert any(word in title for title in titles), word
    authentication = json.loads((OBS / "grafana/dashboards/auth-authentication.json").read_text())
    titles_in_order = [(p["type"], p["title"]) for p in authentication["panels"]]
    audit = titles_in_order.index(("row", "Audit"))
    assert [title for _, title in titles_in_order[audit + 1 :]] == [
        "Audit events by action",
        "Admin API requests by outcome",
        "Admin API requests by operation",
    ]
    exprs = " ".join(t["expr"] for p in authentication["panels"] for t in p.get("targets", []))
    assert "audit_events_total" in exprs and "admin_requests_total" in exprs
    latency = json.loads((OBS / "grafana/dashboards/auth-api-performance.json").read_text())
    legends = {t["legendFormat"] for p in latency["panels"] for t in p["targets"]}
    assert {"p50", "p95", "p99"} <= legends


def test_alert_rules_cover_the_seed_thresholds() -> None:
    rules = yaml.safe_load((OBS / "alerts/rules.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    expected = {
        "APIErrorRateHigh": ("critical", "> 0.05"),
        "APILatencyP95High": ("critical", "> 1"),
        "DatabaseConnectionFailures": ("critical", "> 0"),
        "JobQueueBacklog": ("critical", "> 1000"),
        "AuthFailureRateHigh": ("warning", "> 0.10"),
        "HostCPUHigh": ("warning", "> 0.8"),
        "HostMemoryHigh": ("warning", "> 0.85"),
        "HostDiskLow": ("warning", "< 0.20"),
    }
    for name, (severity, threshold) in expected.items():
        assert alerts[name]["labels"]["severity"] == severity
        assert threshold in " ".join(alerts[name]["expr"].split()), name


def test_compose_pins_every_image_and_wires_the_stack() -> None:
    compose = yaml.safe_load((ROOT / "compose.yml").read_text())
    services = compose["services"]
    for name, service in services.items():
        if "image" in service:
            assert re.search(r":[\w.-]+$", service["image"]) and not service["image"].endswith(":latest"), name
    for needed in (
        "postgres",
        "redis",
        "api-1",
        "api-2",
        "lb",
        "worker",
        "otel-collector",
        "victoriametrics",
        "vmalert",
        "grafana",
        "jaeger",
        "mailcatcher",
    ):
        assert needed in services, needed
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" in grafana
    assert services["api-1"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector:4318")
    assert all("healthcheck" in services[s] for s in ("postgres", "redis", "api-1", "victoriametrics", "grafana"))
