"""The monitoring profile: Prometheus config (promtool), the metrics' names (promtool), the
provisioned Grafana dashboard, and native `make up MONITORING=1` scraping every target."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from native import monitoring
from native.settings import StackSettings
from tests.docker.test_compose import SERVICES, interpolate
from tests.support import HALVES, PREFIXES, ROOT, require_binary
from twinstack_runtime.metrics import Metrics

MONITORING = ROOT / "monitoring"
DASHBOARD = json.loads((MONITORING / "grafana/dashboards/twinstack.json").read_text())
# Rows group the panels below them; they query nothing themselves.
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
ROWS = [p for p in DASHBOARD["panels"] if p["type"] == "row"]
# The service label of each pool's metrics, as its package names it (Metrics("fastapi")), and
# so the dashboard. A project made with one half still has both halves' panels.
SERVICE_LABELS = {"fastapi_service": "fastapi", "flask_service": "flask"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary(shutil.which("promtool"), "promtool (Debian package prometheus)")


def check_config(promtool: str, config: Path) -> str:
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output  # e.g. a targets file missing from the layout
    return output


def test_prometheus_config_as_docker_mounts_it(promtool, tmp_path):
    shutil.copyfile(MONITORING / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(MONITORING / "targets/docker", tmp_path / "targets")
    assert "SUCCESS" in check_config(promtool, tmp_path / "prometheus.yml")


def test_prometheus_config_as_native_mode_renders_it(promtool, tmp_path):
    require_binary(shutil.which("prometheus-nginx-exporter"), "prometheus-nginx-exporter")
    ports = {half: 18001 + n for n, half in enumerate(HALVES)}  # each pool's, as this stack's settings say
    home = monitoring.render(StackSettings(run_dir=tmp_path, **{f"{half.prefix}_port": p for half, p in ports.items()}))
    check_config(promtool, home / "prometheus.yml")
    for half, port in ports.items():
        assert json.loads((home / f"targets/{half.program}.json").read_text())[0]["targets"] == [f"127.0.0.1:{port}"]


def test_promtool_rejects_a_broken_config(promtool, tmp_path):
    (tmp_path / "prometheus.yml").write_text("scrape_configs:\n  - job_name: x\n    scrape_interval: soon\n")
    assert subprocess.run([promtool, "check", "config", tmp_path / "prometheus.yml"], capture_output=True).returncode


def exposing_everything(service: str) -> Metrics:
    """Metrics with a value in every series: a labelled gauge appears once it has one."""
    m = Metrics(service)
    m.started()
    m.finished("/io", "GET", 200, 0.01)
    m.loop_lag.labels(service).set(0)
    # What each worker's database pool reports (twinstack_db/pool.py).
    events = m.db_pool(10)
    events.opened()
    events.checked_out(0.002)
    return m


def test_metric_names_follow_prometheus_conventions(promtool):
    m = exposing_everything("lint")
    result = subprocess.run([promtool, "check", "metrics"], input=m.exposition()[0], capture_output=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_exprs(panels: list[dict] = PANELS) -> list[str]:
    return [t["expr"] for p in panels for t in p["targets"]]


def row_panels(title: str) -> list[dict]:
    """The panels of the row ``title``: below it, above the next row."""
    (row,) = [r for r in ROWS if r["title"] == title]
    below = [r["gridPos"]["y"] for r in ROWS if r["gridPos"]["y"] > row["gridPos"]["y"]]
    end = min(below, default=float("inf"))
    return [p for p in PANELS if row["gridPos"]["y"] < p["gridPos"]["y"] < end]


def test_dashboard_is_provisioned_against_the_provisioned_datasource():
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/twinstack.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in PANELS:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"] and all(t["expr"] and t["datasource"]["uid"] == uid for t in panel["targets"])
    for row in ROWS:  # an open row: its panels follow it on the grid, none is hidden inside
        assert not row.get("targets") and row["collapsed"] is False and row["panels"] == [], row["title"]


def test_dashboard_shows_what_the_issue_asks_for():
    titles = " | ".join(p["title"].lower() for p in PANELS)
    for word in ("throughput", "p50", "p95", "p99", "errors", "in flight", "loop lag", "busy"):
        assert word in titles, word


def test_dashboard_has_a_database_pool_row_for_each_pool():
    """Per pool: open and checked-out connections against pool_size, the share of the pool in
    use, and the wait for a connection as quantiles."""
    panels = row_panels("Database pool")
    for service in SERVICE_LABELS.values():
        (connections,) = [p for p in panels if f'service="{service}"' in " ".join(dashboard_exprs([p]))]
        queried = " | ".join(dashboard_exprs([connections]))
        for series in (
            'twinstack_db_connections{service="%s",state="open"}',
            'twinstack_db_connections{service="%s",state="checked_out"}',
            'twinstack_db_pool_limit{service="%s",limit="pool_size"}',
        ):
            assert series % service in queried, (connections["title"], series)
    exprs = dashboard_exprs(panels)
    # In use: checked out over pool_size, per pool.
    checked_out = 'sum by (service) (twinstack_db_connections{state="checked_out"})'
    size = 'sum by (service) (twinstack_db_pool_limit{limit="pool_size"})'
    assert f"{checked_out} / {size}" in exprs
    waits = [p for p in panels if "twinstack_db_pool_wait_seconds" in " ".join(dashboard_exprs([p]))]
    assert [p["fieldConfig"]["defaults"]["unit"] for p in waits] == ["s"]
    for q in ("0.5", "0.95", "0.99"):
        rate = "rate(twinstack_db_pool_wait_seconds_bucket[1m])"
        assert f"histogram_quantile({q}, sum by (le, service) ({rate}))" in dashboard_exprs(waits), q


def exposed_series() -> dict[str, dict[str, set[str]]]:
    """Every series both pools expose: metric -> label -> the values it takes."""
    series: dict[str, dict[str, set[str]]] = {}
    for service in SERVICE_LABELS.values():
        text = exposing_everything(service).exposition()[0].decode()
        for name, labels in re.findall(r"^(\w+)(?:\{([^}]*)\})? ", text, re.M):
            values = series.setdefault(name, {})
            for label, value in re.findall(r'(\w+)="([^"]*)"', labels):
                values.setdefault(label, set()).add(value)
    return series


def test_the_service_labels_are_the_pools_own():
    for package, label in SERVICE_LABELS.items():
        if (ROOT / package).is_dir():  # where the half is part of the project
            sources = " ".join(path.read_text() for path in (ROOT / package).rglob("*.py"))
            assert f'Metrics("{label}")' in sources, package


def test_dashboard_queries_only_metrics_that_exist():
    exposed = exposed_series()
    used = {name for expr in dashboard_exprs() for name in re.findall(r"\b(twinstack_\w+)", expr)}
    assert used and used <= set(exposed), used - set(exposed)
    # nginx-prometheus-exporter's names for stub_status.
    nginx = {name for expr in dashboard_exprs() for name in re.findall(r"\b(nginx_\w+)", expr)}
    assert nginx <= {"nginx_http_requests_total", "nginx_connections_active", "nginx_up"}


def test_dashboard_selects_only_label_values_that_exist():
    """A selector on a label the metric does not have, or a value it never takes
    (state="checkedout"), matches nothing: the panel is silently empty."""
    exposed = exposed_series()
    checked = 0
    for expr in dashboard_exprs():
        for name, selectors in re.findall(r"\b(twinstack_\w+)\{([^}]*)\}", expr):
            for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selectors):
                assert label in exposed[name], f"{expr}: {name} has no label {label}"
                if op in ("=", "=~") and re.fullmatch(r"[\w|]+", value):  # a value, or values by |
                    missing = set(value.split("|")) - exposed[name][label]
                    assert not missing, f"{expr}: {name}{{{label}}} never is {', '.join(sorted(missing))}"
                    checked += 1
    assert checked


@pytest.mark.integration
def test_native_monitoring_scrapes_every_pool_and_nginx(tmp_path, nginx_bin):
    from tests.integration.conftest import running_stack
    from tests.support import free_port

    require_binary(shutil.which("prometheus"), "prometheus")
    require_binary(shutil.which("prometheus-nginx-exporter"), "prometheus-nginx-exporter")
    with running_stack(
        tmp_path,
        TWINSTACK_MONITORING="1",
        TWINSTACK_PROMETHEUS_PORT=str(free_port()),
        TWINSTACK_NGINX_EXPORTER_PORT=str(free_port()),
    ) as own:
        prometheus = f"http://127.0.0.1:{own.env['TWINSTACK_PROMETHEUS_PORT']}"
        pools = {half.program for half in HALVES}  # each pool's job, and its metrics' service label
        for prefix in PREFIXES:
            httpx.get(f"{own.base_url}{prefix}/io?delay_ms=1", timeout=10)
        deadline = time.monotonic() + 60
        while True:
            targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in targets}
            if set(health) >= {*pools, "nginx"} and all(v == "up" for v in health.values()):
                break
            assert time.monotonic() < deadline, health
            time.sleep(1)
        query = "sum by (service) (twinstack_requests_total)"
        deadline = time.monotonic() + 30
        while len(
            result := httpx.get(f"{prometheus}/api/v1/query", params={"query": query}).json()["data"]["result"]
        ) < len(pools):
            assert time.monotonic() < deadline, result
            time.sleep(1)
        assert {r["metric"]["service"] for r in result} == pools
        up = httpx.get(f"{prometheus}/api/v1/query", params={"query": "nginx_up"}).json()["data"]["result"]
        assert up and up[0]["value"][1] == "1"


@pytest.mark.parametrize(
    ("password", "starts"), [("", False), ("change-me", False), ("admin", False), ("s3cret-of-mine", True)]
)
def test_grafana_refuses_to_start_with_an_empty_or_known_password(tmp_path, password: str, starts: bool):
    """Runs the service's own entrypoint with sh, /run.sh (the image's) replaced by a marker."""
    grafana = SERVICES["grafana"]
    assert interpolate(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]) == ""  # .env.example sets none
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "${TWINSTACK_GRAFANA_ANONYMOUS:-false}"
    shell, flag, script = grafana["entrypoint"]
    marker = tmp_path / "started"
    script = script.replace("$$", "$").replace("exec /run.sh", f"touch {marker}")
    result = subprocess.run([shell, flag, script], env={"GF_SECURITY_ADMIN_PASSWORD": password}, capture_output=True)
    assert (result.returncode == 0 and marker.exists()) == starts, result.stderr
    if not starts:
        assert b"TWINSTACK_GRAFANA_ADMIN_PASSWORD" in result.stderr
