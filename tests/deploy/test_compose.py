"""The deployment (docker-compose.yml, deploy/) as CI can check it without running
containers: `docker-compose config` (Debian's docker-compose, which .ci/run installs)
accepts the file, it has the services the README promises wired as it says, and every
metric the Grafana dashboard and Prometheus ask for is one the gateway exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import orchestra.metrics  # noqa: F401  (registers every metric Orchestra exports)
from orchestra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GATEWAYS = ["gateway-1", "gateway-2"]
REQUIRED = {
    "ORCHESTRA_JWT_SECRET": "jwt",
    "ORCHESTRA_SECRETS_KEY": "key",
    "ORCHESTRA_AGENT_ID": "agent-1",
    "ORCHESTRA_AGENT_SECRET": "secret",
    "GRAFANA_ADMIN_PASSWORD": "grafana",
}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's package)")
    # Only what the file reads: nothing of the caller's own ORCHESTRA_* settings.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "COMPOSE_"))}
    return subprocess.run(
        [binary, "--project-name", "orchestra", "config"],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    done = compose_config(REQUIRED)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def test_the_compose_file_runs_the_promised_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "redis", "postgres", *GATEWAYS, "balancer", "agent", "prometheus", "grafana",
    }  # fmt: skip
    assert services["redis"]["command"][-2:] == ["--appendonly", "yes"]
    envs = [services[name]["environment"] for name in GATEWAYS]
    assert {env["ORCHESTRA_NODE_ID"] for env in envs} == {"gw1", "gw2"}
    for env in envs:
        assert env["ORCHESTRA_PROFILE"] == "production"
        assert env["ORCHESTRA_REDIS_URL"] == "redis://redis:6379/0"
        assert env["ORCHESTRA_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["ORCHESTRA_DATABASE_URL"].endswith("@postgres:5432/orchestra")
        assert env["ORCHESTRA_JWT_SECRET"] == "jwt"
    # One address outside: the balancer's. Prometheus and Grafana on this host only.
    published = {
        name: [_published(port) for port in svc["ports"]]
        for name, svc in services.items()
        if svc.get("ports")
    }
    assert published == {
        "balancer": [":8080"],
        "prometheus": ["127.0.0.1:9090"],
        "grafana": ["127.0.0.1:3000"],
    }
    assert services["agent"]["command"][-2:] == ["--server", "http://balancer:8080"]
    # Every ORCHESTRA_* name set is a setting (the settings refuse any other).
    fields = {f"ORCHESTRA_{name.upper()}" for name in Settings.model_fields}
    used = {k for svc in services.values() for k in svc.get("environment") or {}}
    assert {k for k in used if k.startswith("ORCHESTRA_")} <= fields


def _published(port: Any) -> str:
    """`host_ip:published` of a port as `docker-compose config` writes it (a mapping, or
    a string `[ip:]published:target[/proto]`)."""
    if isinstance(port, dict):
        return f"{port.get('host_ip', '')}:{port['published']}"
    parts = str(port).split("/")[0].split(":")
    return f"{parts[0] if len(parts) == 3 else ''}:{parts[-2]}"


def test_the_secrets_must_be_given() -> None:
    for name in ("ORCHESTRA_JWT_SECRET", "ORCHESTRA_SECRETS_KEY", "GRAFANA_ADMIN_PASSWORD"):
        done = compose_config({k: v for k, v in REQUIRED.items() if k != name})
        assert done.returncode != 0 and name in done.stderr, (name, done.stderr)


def test_the_balancer_is_sticky_and_passes_websockets_to_every_node() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    upstream = re.search(r"upstream gateways \{(.*?)\}", conf, re.S)
    assert upstream is not None
    assert "ip_hash;" in upstream.group(1)
    servers = re.findall(r"^\s*server\s+([\w.-]+:\d+)", upstream.group(1), re.M)
    assert servers == [f"{name}:8080" for name in GATEWAYS]
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert re.search(r"location = /metrics \{\s*return 404;", conf)


def test_prometheus_scrapes_every_node_directly(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == [f"{name}:8080" for name in GATEWAYS]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(str(m).startswith(f"{DEPLOY / 'prometheus.yml'}:") for m in mounts)


def test_grafana_is_provisioned_with_the_dashboard(compose: dict[str, Any]) -> None:
    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert [(d["type"], d["url"]) for d in datasources] == [
        ("prometheus", "http://prometheus:9090")
    ]
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/orchestra.yml").read_text()
    )["providers"][0]
    mounts = [str(m) for m in compose["services"]["grafana"]["volumes"]]
    dashboard_file = provider["options"]["path"] + "/orchestra.json"
    assert f"{DEPLOY / 'grafana/orchestra.json'}:{dashboard_file}:ro" in mounts
    assert f"{DEPLOY / 'grafana/provisioning'}:/etc/grafana/provisioning:ro" in mounts
    dashboard = json.loads((DEPLOY / "grafana/orchestra.json").read_text())
    uids = {t["datasource"]["uid"] for t in _targets(dashboard)}
    assert uids == {datasources[0]["uid"]}


# -- metric names --------------------------------------------------------------------------

#: PromQL's functions, aggregations and keywords: any other name in a query is a metric
_PROMQL = frozenset(
    """sum avg min max count count_values stddev stdvar topk bottomk quantile group rate irate
    increase delta idelta deriv predict_linear histogram_quantile abs ceil floor round
    clamp clamp_min clamp_max exp ln log2 log10 sqrt sort sort_desc time timestamp vector
    scalar label_replace label_join absent absent_over_time changes resets avg_over_time
    min_over_time max_over_time sum_over_time count_over_time quantile_over_time
    last_over_time present_over_time and or unless offset bool by without on ignoring
    group_left group_right inf nan""".split()
)


def exported_names() -> set[str]:
    """Every series name the gateway's `/metrics` may carry: the default registry, which
    `orchestra.metrics` adds to, with the suffixes of each metric type."""
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_count", "_sum", "_created"],
        "summary": ["", "_count", "_sum", "_created"],
        "gauge": [""],
        "info": ["_info"],
    }
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, [""])
    }


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges, Grafana's $__rate_interval
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", "", expr)  # numbers
    return {t for t in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr) if t.lower() not in _PROMQL}


def _targets(node: Any) -> list[dict[str, Any]]:
    """Every query target of a dashboard, however deep its panels nest."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            found.append(node)
        for value in node.values():
            found.extend(_targets(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_targets(value))
    return found


def test_the_dashboard_asks_only_for_metrics_the_code_exports() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, event) (rate(a_bucket{x="y"}[5m]))) / b'
    ) == {"a_bucket", "b"}
    dashboard = json.loads((DEPLOY / "grafana/orchestra.json").read_text())
    exprs = [t["expr"] for t in _targets(dashboard)]
    assert len(exprs) > 20
    used = set().union(*(metric_names(e) for e in exprs))
    exported = exported_names()
    assert used - exported == set(), f"not exported by orchestra: {sorted(used - exported)}"
    # It shows most of what there is to see.
    ours = {name for name in exported if name.startswith("orchestra_")}
    shown = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in used & ours}
    families = {re.sub(r"_(bucket|count|sum|total|created)$", "", name) for name in ours}
    assert len(shown) >= len(families) - 2, sorted(families - shown)


def test_prometheus_rules_ask_only_for_exported_metrics() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    exported = exported_names()
    for pattern in config.get("rule_files") or []:
        for path in DEPLOY.glob(Path(pattern).name):
            groups = yaml.safe_load(path.read_text())["groups"]
            for rule in (r for g in groups for r in g["rules"]):
                assert metric_names(rule["expr"]) <= exported | {rule.get("record")}, rule
