"""Prometheus rules, scrape configuration and Grafana dashboards.

promtool (Debian's `prometheus` package, installed by .ci/run) checks the
rules and the scrape configuration and runs the rules' unit tests
(platform/prometheus/tests/alerts_test.yml: series that make each alert
fire, and series that must not). Every alert's runbook_url must resolve to a
runbook section, and every metric that a rule or a dashboard panel queries
must be one the platform exports (read from the real registry and the real
scrape-time collectors, not from a list kept by hand).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "platform" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
DASHBOARDS = sorted((ROOT / "platform" / "grafana" / "dashboards").glob("*.json"))
PROMTOOL = shutil.which("promtool")


def needs_promtool(test):
    """promtool runs as a process (the live lane); a missing one skips locally
    and fails under CI (tests/tools.py)."""
    required = pytest.mark.requires(PROMTOOL is not None, reason="promtool not installed (apt-get install prometheus)")
    return pytest.mark.live(required(test))


# Series Prometheus itself makes, not the platform.
PROMETHEUS_SERIES = {"up", "ALERTS"}
# Reported by the queue reading only when the broker is RabbitMQ.
RABBITMQ_ONLY = {"saas_queue_consumers"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=PROMETHEUS, timeout=60)


@needs_promtool
def test_rules_are_valid():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_each_alert_fires_and_stays_quiet_as_its_unit_tests_say():
    result = promtool("test", "rules", "tests/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_scrape_configuration_is_valid_and_has_the_jobs_the_rules_use():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"] for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]}
    used = set(re.findall(r'job="([^"]+)"', RULES.read_text()))
    assert used == {"saas-web", "saas-worker", "saas-beat"} and used <= jobs


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def untested_alerts() -> set[str]:
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "tests" / "alerts_test.yml").read_text()))
    return {rule["alert"] for rule in alert_rules()} - tested


def test_every_alert_has_unit_tests():
    assert untested_alerts() == set()


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in markdown.splitlines() if line.startswith("#")}


def test_every_alert_links_a_runbook_section_that_exists():
    rules = alert_rules()
    assert len(rules) >= 15
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        runbook = ROOT / path
        assert path.startswith("docs/runbooks/") and runbook.is_file(), f"{rule['alert']}: {url}"
        assert anchor and anchor in heading_anchors(runbook.read_text()), f"{rule['alert']}: no section {anchor}"
        assert rule["annotations"].get("summary"), rule["alert"]


def test_links_from_the_alert_runbook_resolve():
    """Its links to other runbooks and docs pages (relative, as the docs
    site has them; `bin/dev lint` builds the whole site with --strict)."""
    page = ROOT / "docs" / "runbooks" / "alerts.md"
    for target, anchor in re.findall(r"\]\(([\w\-./]+\.md)(?:#([\w\-]+))?\)", page.read_text()):
        linked = (page.parent / target).resolve()
        assert linked.is_file(), target
        if anchor:
            assert anchor in heading_anchors(linked.read_text()), f"{target}#{anchor}"


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    names = set(re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr))
    return {name for name in names if name.lower() not in PROMQL_WORDS}


@pytest.fixture(scope="module")
def exported(django_db_setup, django_db_blocker) -> set[str]:
    """Every series name the platform's processes and readings export."""
    from django.conf import settings
    from django_prometheus.middleware import Metrics
    from prometheus_client import REGISTRY

    import apps.partitions.maintenance  # noqa: F401 (registers its metrics)
    from apps.jobs.metrics import _WorkerCollector
    from apps.observability import metrics  # noqa: F401
    from apps.ops import collectors  # noqa: F401

    Metrics.get_instance()  # django-prometheus's HTTP series
    names = set(REGISTRY._names_to_collectors) | PROMETHEUS_SERIES | RABBITMQ_ONLY
    saved, settings.METRICS_CACHE_SECONDS = settings.METRICS_CACHE_SECONDS, 0
    try:
        with django_db_blocker.unblock():
            for collector in [*collectors.PLATFORM_COLLECTORS, _WorkerCollector()]:
                for family in collector.collect():
                    names.add(family.name)
    finally:
        settings.METRICS_CACHE_SECONDS = saved
    return names


def test_the_name_reader_reads_promql():
    assert metric_names('histogram_quantile(0.99, sum by (le, view) (rate(x_bucket{a="b"}[5m]))) > 1 and '
                        'max by (queue) (y) unless on (queue) z offset 5m') == {"x_bucket", "y", "z"}


def test_rules_query_only_exported_metrics(exported):
    rules = alert_rules()
    assert rules
    for rule in rules:
        unknown = metric_names(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']} queries {unknown}, which nothing exports"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_query_only_exported_metrics(path, exported):
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            unknown = metric_names(target["expr"]) - exported
            assert not unknown, f"{path.name}: panel {panel['title']!r} queries {unknown}, which nothing exports"


def test_three_dashboards_are_provisioned():
    assert {p.stem for p in DASHBOARDS} == {"platform-overview", "tenants-and-shards", "queues-and-tasks"}
    provider = yaml.safe_load((ROOT / "platform/grafana/provisioning/dashboards/saas.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load((ROOT / "platform/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
