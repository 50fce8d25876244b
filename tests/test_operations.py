"""Probes, readiness, request ids and structured logs."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import override_settings

from apps.observability.logging import ContextFilter, JsonFormatter
from tests.redis_faults import counting_connects

DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_REDIS_ADDRESS = ("127.0.0.1", 1)
OPERATOR = "Bearer test-ops-token"  # OPS_TOKEN of the test settings


def test_healthz_answers_on_any_host_without_io(client):
    # No django_db mark: any database access here would raise.
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz", HTTP_HOST="anything.example", HTTP_AUTHORIZATION=OPERATOR)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["down"] == []
    statuses = {name: c["status"] for name, c in body["checks"].items()}
    assert statuses["database"] == statuses["redis"] == statuses["broker"] == statuses["shard_main"] == "up"
    assert all(status == "up" for status in statuses.values())


@pytest.mark.django_db
def test_readyz_is_degraded_fast_when_redis_is_down(client):
    # Requests are still served without Redis (see the caching and rate-limit
    # tests), so the pod stays in the load balancer, reporting what is down.
    with override_settings(REDIS_URL=DEAD_REDIS, CELERY_BROKER_URL=DEAD_REDIS), counting_connects() as tried:
        response = client.get("/readyz", HTTP_AUTHORIZATION=OPERATOR)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and set(body["down"]) == {"redis", "broker"}
    assert body["checks"]["database"]["status"] == "up"
    # A dead dependency must not hang the probe: one refused connect per
    # check (redis, broker), no retries with back-off.
    assert tried == [DEAD_REDIS_ADDRESS] * 2, tried


@pytest.mark.django_db
def test_readyz_is_503_when_the_control_database_is_down(client, monkeypatch):
    import psycopg

    from apps.ops import health

    def dead_database():
        psycopg.connect("postgres://postgres@127.0.0.1:1/none", connect_timeout=1)

    monkeypatch.setitem(health.CRITICAL_CHECKS, "database", dead_database)
    response = client.get("/readyz", HTTP_AUTHORIZATION=OPERATOR)
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and "database" in response.json()["down"]
    # A load balancer (or anyone) without operator access sees the status only.
    anonymous = client.get("/readyz", HTTP_HOST="alpha.localhost")
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "unavailable"}
    assert "127.0.0.1" not in anonymous.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["alpha.localhost", "localhost", "10.1.2.3"])
@pytest.mark.parametrize("credential", [None, "Bearer wrong-token", "Bearer ", "Basic dGVzdC1vcHMtdG9rZW4="])
def test_metrics_and_readyz_detail_are_for_operators_only(client, alpha, host, credential):
    headers = {"HTTP_HOST": host}
    if credential is not None:
        headers["HTTP_AUTHORIZATION"] = credential
    metrics = client.get("/metrics", **headers)
    assert metrics.status_code == 404 and metrics["Content-Type"] == "application/problem+json"
    assert b"django_http" not in metrics.content
    ready = client.get("/readyz", **headers)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


@pytest.mark.django_db
def test_operators_get_metrics_with_the_token_or_on_the_internal_listener(client, settings):
    assert client.get("/metrics", HTTP_AUTHORIZATION=OPERATOR).status_code == 200
    settings.OPS_TOKEN = ""  # no token configured: a bearer header opens nothing
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    settings.OPS_PORT = 9100
    assert client.get("/metrics", SERVER_PORT="9100").status_code == 200
    assert client.get("/metrics", SERVER_PORT="80").status_code == 404
    assert "checks" in client.get("/readyz", SERVER_PORT="9100").json()


@pytest.mark.django_db
def test_tenant_pages_still_served_when_the_cache_is_down(client, alpha, settings):
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": DEAD_REDIS,
        }
    }
    response = client.get("/", HTTP_HOST="alpha.localhost")
    assert response.status_code == 200


@pytest.mark.django_db
def test_request_id_is_echoed(client, alpha):
    response = client.get("/", HTTP_HOST="alpha.localhost", HTTP_X_REQUEST_ID="req-123")
    assert response["X-Request-ID"] == "req-123"


@pytest.mark.django_db
def test_request_id_is_generated_when_missing_or_unsafe(client, alpha):
    generated = client.get("/", HTTP_HOST="alpha.localhost")["X-Request-ID"]
    assert len(generated) == 32
    unsafe = client.get("/", HTTP_HOST="alpha.localhost", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert unsafe["X-Request-ID"] != "bad id\nwith newline"
    assert len(unsafe["X-Request-ID"]) == 32


@pytest.fixture
def json_log_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    # "django" does not propagate to the root (it has its own handler).
    loggers = [logging.getLogger(), logging.getLogger("django")]
    old_levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    for logger, level in zip(loggers, old_levels):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.django_db
def test_every_log_line_of_a_request_has_request_id_and_tenant(client, alpha, json_log_lines):
    client.get("/missing-page", HTTP_HOST="alpha.localhost", HTTP_X_REQUEST_ID="trace-42")
    lines = json_log_lines()
    request_lines = [line for line in lines if line.get("request_id") == "trace-42"]
    assert {line["name"] for line in request_lines} >= {"apps.request", "django.request"}
    # Django's own "Not Found" warning is logged after the middleware returns.
    assert any(line["message"].startswith("Not Found") for line in request_lines)
    assert all(line["tenant"] == "alpha" for line in request_lines)


@pytest.mark.django_db
def test_log_context_does_not_leak_into_the_next_request(client, alpha, json_log_lines):
    client.get("/", HTTP_HOST="alpha.localhost", HTTP_X_REQUEST_ID="first")
    client.get("/healthz", HTTP_HOST="localhost", HTTP_X_REQUEST_ID="second")
    client.get("/", HTTP_HOST="localhost", HTTP_X_REQUEST_ID="third")
    third = [line for line in json_log_lines() if line.get("request_id") == "third"]
    assert third and all(line["tenant"] == "-" for line in third)
