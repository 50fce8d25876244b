"""Tracing: one trace from an API write, through the outbox, to the task it
caused and that task's queries; the trace id in log lines and problem
bodies; and nothing instrumented at all when tracing is not configured.

The web side runs in this process with an in-memory exporter; the task runs
in a real Celery worker (a private redis-server as broker) that writes its
spans to a file (tests/span_file.py, switched on by TRACING_SPAN_FILE).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
import requests
from django.db import connections
from django.test import Client

from apps.observability import tracing
from tests.span_file import read_spans, span_record
from tests.support import ROOT, Gunicorn, committed_tenant, process_env
from tests.test_operations import json_log_lines  # noqa: F401  (fixture)
from tests.workers import CeleryWorker, live_broker, wait_until

pytestmark = pytest.mark.live


@pytest.fixture
def traced_here():
    """Tracing installed in this process, its spans kept in memory."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    # Connections opened before would not be traced; nor should this test's
    # traced connections outlive it.
    connections.close_all()
    tracing.install([SimpleSpanProcessor(memory)], service_name="saas-platform-web")
    try:
        yield memory
    finally:
        tracing.uninstall()
        connections.close_all()


def owner_client(tenant) -> Client:
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token

    owner = User.objects.get(email=f"owner@{tenant.slug}.test")
    token = issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)
    return Client(HTTP_HOST=f"{tenant.slug}.localhost", HTTP_AUTHORIZATION=f"Bearer {token}")


def one(spans: list[dict], **match) -> dict:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s["name"], s["kind"]) for s in spans])
    return found[0]


def test_one_trace_links_the_api_write_the_outbox_relay_the_task_and_its_queries(
        tenants, django_db_blocker, tmp_path, traced_here, json_log_lines):  # noqa: F811  (the fixture)
    span_file = tmp_path / "worker-spans.jsonl"
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    with live_broker("redis") as broker, django_db_blocker.unblock(), committed_tenant("traced") as tenant:
        worker = CeleryWorker(broker_url=broker["url"], queues="search", name="traced",
                              env={"TRACING_SPAN_FILE": str(span_file)}).start()
        try:
            client = owner_client(tenant)
            response = client.post("/api/v1/documents", {"title": "traced write"}, content_type="application/json",
                                   HTTP_X_REQUEST_ID=request_id)
            assert response.status_code == 201, response.content

            def task_spans():
                spans = read_spans(span_file)
                return spans if any(s["name"] == "run/search.index_documents" for s in spans) else None

            worker_spans = wait_until(task_spans, 60, message="the worker traced the index task")
            refused = client.post("/api/v1/documents", {"title": ""}, content_type="application/json")
        finally:
            worker.stop()

    web = [span_record(span) for span in traced_here.get_finished_spans()]
    request = next(s for s in web if s["kind"] == "SERVER" and s["attributes"].get("request.id") == request_id)
    trace_id = request["trace_id"]
    assert request["attributes"]["tenant.id"] == tenant.pk
    assert request["attributes"]["tenant.slug"] == "traced"

    # The relay published from its own thread, after the request had ended,
    # in the request's trace: its span is a child of the request's span.
    relay = one(web, name="outbox.relay search.index_documents")
    assert (relay["trace_id"], relay["parent_id"]) == (trace_id, request["span_id"])
    publish = one(web, name="apply_async/search.index_documents")
    assert (publish["trace_id"], publish["parent_id"]) == (trace_id, relay["span_id"])

    task = one(worker_spans, name="run/search.index_documents")
    assert (task["trace_id"], task["parent_id"]) == (trace_id, publish["span_id"])
    assert task["kind"] == "CONSUMER" and task["service"] == "saas-platform-worker"
    assert task["attributes"]["tenant.id"] == tenant.pk and task["attributes"]["request.id"] == request_id
    queries = [s for s in worker_spans if s["parent_id"] == task["span_id"] and s["kind"] == "CLIENT"
               and s["attributes"].get("db.system") == "postgresql"]
    assert any("search_searchentry" in q["attributes"].get("db.statement", "") for q in queries), queries
    assert all(q["trace_id"] == trace_id for q in queries)
    # A query outside any request or task (the broker's polling, the worker's
    # start-up) starts no trace of its own.
    assert all(s["parent_id"] is not None for s in worker_spans if s["kind"] == "CLIENT")

    # Every log line of the request carries its trace id.
    lines = json_log_lines()
    request_lines = [line for line in lines if line.get("request_id") == request_id]
    assert request_lines and all(line["trace_id"] == trace_id for line in request_lines), request_lines
    line = next(line for line in request_lines if line["name"] == "apps.request")
    assert line["span_id"] == request["span_id"]

    # A problem body names the trace of the request that got it.
    assert refused.status_code == 400 and refused["Content-Type"] == "application/problem+json"
    problem = refused.json()
    refused_span = one(web, kind="SERVER", trace_id=problem["trace_id"])
    assert refused_span["attributes"]["http.status_code"] == 400
    assert problem["trace_id"] != trace_id
    # Django's "Bad Request" warning, written after the request's span ended, too.
    assert any(line["name"] == "django.request" and line["trace_id"] == problem["trace_id"] for line in lines)


def test_a_gunicorn_worker_traces_after_fork_and_logs_and_answers_with_the_trace_id(tenants, tmp_path):
    span_file = tmp_path / "web-spans.jsonl"
    with Gunicorn(workers=1, env={"TRACING_SPAN_FILE": str(span_file), "LOG_LEVEL": "INFO"}) as server:
        response = requests.get(server.url + "/api/v1/documents", headers={"Host": "alpha.localhost"}, timeout=10)
        log = server.log_text()

    assert response.status_code == 401
    trace_id = response.json()["trace_id"]
    spans = read_spans(span_file)
    request = one(spans, kind="SERVER", trace_id=trace_id)
    assert request["service"] == "saas-platform-web" and request["attributes"]["tenant.slug"] == "alpha"
    assert any(s["parent_id"] == request["span_id"] and s["attributes"].get("db.system") == "postgresql"
               for s in spans)
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/api/v1/documents" and line["trace_id"] == trace_id for line in lines), log[-2000:]


def _inspect_process(role_hook: str) -> dict:
    """Start a process as gunicorn's post_fork or Celery's pool-process start
    would set it up, with no OTEL_* variables, and report what is instrumented."""
    code = f"""
import json, os, sys, runpy
import django
django.setup()
import psycopg
from celery import signals
from django.conf import settings
from django.db import connection
from config.celery_app import app
from apps.observability import tracing
{role_hook}
connection.ensure_connection()
cursor = connection.connection.cursor()
print(json.dumps({{
    "enabled": tracing.ENABLED,
    "middleware": settings.MIDDLEWARE,
    "connect_wrapped": hasattr(psycopg.connect, "__wrapped__") or hasattr(psycopg.Connection.connect, "__wrapped__"),
    "cursor": type(cursor).__module__ + "." + type(cursor).__qualname__,
    "prerun_receivers": [repr(r) for r in signals.task_prerun.receivers],
    # (redis-py imports OpenTelemetry's API and metrics SDK for its own use.)
    "otel_modules": sorted(m for m in sys.modules if m.startswith(("opentelemetry.instrumentation",
                                                                    "opentelemetry.sdk.trace"))),
}}))
"""
    env = {key: value for key, value in process_env().items()
           if not key.startswith("OTEL_") and key != "TRACING_SPAN_FILE"}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("role_hook", [
    # gunicorn's post_fork hook
    "post_fork = runpy.run_path('config/gunicorn.conf.py')['post_fork']; post_fork(None, None)",
    # what a Celery pool process runs when it starts
    "signals.worker_process_init.send(sender=None)",
], ids=["gunicorn-worker", "celery-pool-process"])
def test_without_otel_variables_nothing_is_instrumented(role_hook, tenants):
    from django.conf import settings

    state = _inspect_process(role_hook)

    assert state["enabled"] is False
    assert state["middleware"] == [name for name in settings.MIDDLEWARE if name != tracing.TRACING_MIDDLEWARE]
    assert not any("opentelemetry" in name or "tracing" in name for name in state["middleware"])
    assert state["connect_wrapped"] is False
    assert state["cursor"].startswith("django.db.backends.postgresql"), state["cursor"]
    assert not any("opentelemetry" in receiver for receiver in state["prerun_receivers"])
    assert state["otel_modules"] == []


def test_the_tracing_middleware_comes_right_after_the_probes_and_goes_away_on_uninstall(traced_here):
    from django.conf import settings

    middleware = settings.MIDDLEWARE
    position = middleware.index(tracing.TRACING_MIDDLEWARE)
    assert middleware[position - 1] == "apps.ops.endpoints.OperationalEndpointsMiddleware"
    assert middleware[position + 1] == "apps.observability.middleware.RequestIdMiddleware"


def test_probes_are_not_traced_and_a_foreign_host_still_gets_its_problem(traced_here):
    assert Client().get("/healthz").status_code == 200
    response = Client(HTTP_HOST="elsewhere.example.org").get("/api/v1/documents")

    assert response.status_code == 400 and response.json()["type"].endswith("invalid-host")
    assert traced_here.get_finished_spans() == ()


@pytest.mark.parametrize(("env", "enabled", "exporters"), [
    ({}, False, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console,otlp"}, True, ["console", "otlp"]),
    ({"OTEL_SDK_DISABLED": "false"}, True, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False, []),
])
def test_the_otel_variables_decide_whether_tracing_is_on(env, enabled, exporters):
    code = "from django.conf import settings; print(settings.TRACING_ENABLED, ','.join(settings.TRACING_EXPORTERS))"
    base = {key: value for key, value in process_env().items() if not key.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(enabled), *([",".join(exporters)] if exporters else [])]


@pytest.mark.parametrize(("env", "expected"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: expected a comma-separated list of otlp"),
    ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG: expected a ratio from 0 to 1"),
])
def test_a_bad_otel_variable_stops_the_process_with_one_line(env, expected):
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "check"], env={**process_env(), **env},
                            cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert expected in result.stderr.strip(), result.stderr
