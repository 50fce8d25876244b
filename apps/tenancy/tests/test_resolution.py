"""Hostname -> tenant resolution on the request path."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.tenancy.models import Domain, Tenant
from apps.tenancy.services import tenant_set_status

pytestmark = pytest.mark.django_db


def test_tenant_host_serves_that_tenant(client, alpha, beta):
    assert client.get("/", HTTP_HOST="alpha.localhost").json()["tenant"] == "alpha"
    assert client.get("/", HTTP_HOST="beta.localhost").json()["tenant"] == "beta"


def test_host_matching_ignores_case_and_port(client, alpha):
    response = client.get("/", HTTP_HOST="ALPHA.localhost:8000")
    assert response.status_code == 200
    assert response.json()["tenant"] == "alpha"


def test_unknown_host_is_a_json_404(client, tenants):
    response = client.get("/", HTTP_HOST="nobody.localhost")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404
    assert "nobody.localhost" in body["detail"]


def test_host_outside_the_platform_is_a_json_400(client, tenants):
    response = client.get("/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert response.json()["type"].endswith("invalid-host")


def test_suspended_tenant_gets_a_json_403_and_recovers(client, alpha):
    assert client.get("/", HTTP_HOST="alpha.localhost").status_code == 200  # now cached
    tenant_set_status(tenant=alpha, status=Tenant.Status.SUSPENDED)
    response = client.get("/", HTTP_HOST="alpha.localhost")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert "suspended" in response.json()["detail"]
    tenant_set_status(tenant=alpha, status=Tenant.Status.ACTIVE)
    assert client.get("/", HTTP_HOST="alpha.localhost").status_code == 200


def test_cached_lookup_costs_no_query_and_one_search_path(client, alpha):
    from django.db import connections

    client.post("/admin/login/?next=/admin/", {"username": "owner@alpha.test", "password": "alpha-pass"},
                HTTP_HOST="alpha.localhost")
    client.get("/admin/content/document/", HTTP_HOST="alpha.localhost")  # warm the cache
    with CaptureQueriesContext(connection) as control, CaptureQueriesContext(connections["shard_main"]) as shard:
        response = client.get("/admin/content/document/", HTTP_HOST="alpha.localhost")
    assert response.status_code == 200
    statements = [q["sql"] for q in control.captured_queries + shard.captured_queries]
    assert any("content_document" in s for s in statements)  # the page did read tenant data
    assert not [s for s in statements if "tenancy_domain" in s or "tenancy_tenant" in s], statements
    assert len([s for s in statements if s.upper().startswith("SET SEARCH_PATH")]) == 1, statements


def test_changing_a_domain_moves_the_tenant_at_once(client, alpha):
    assert client.get("/", HTTP_HOST="alpha.localhost").status_code == 200  # cached
    domain = Domain.objects.get(domain="alpha.localhost")
    domain.domain = "alpha-renamed.localhost"
    domain.save()
    assert client.get("/", HTTP_HOST="alpha.localhost").status_code == 404
    assert client.get("/", HTTP_HOST="alpha-renamed.localhost").json()["tenant"] == "alpha"


def test_adding_a_domain_replaces_a_cached_miss(client, alpha):
    assert client.get("/", HTTP_HOST="www-alpha.localhost").status_code == 404  # cached as missing
    Domain.objects.create(domain="www-alpha.localhost", tenant=alpha, is_primary=False)
    assert client.get("/", HTTP_HOST="www-alpha.localhost").json()["tenant"] == "alpha"


def test_tenant_changes_reach_cached_hosts(client, alpha):
    client.get("/", HTTP_HOST="alpha.localhost")
    alpha.name = "Alpha Renamed"
    alpha.save()
    assert client.get("/", HTTP_HOST="alpha.localhost").json()["name"] == "Alpha Renamed"


def test_request_leaves_the_connection_on_the_public_schema(client, alpha):
    client.get("/", HTTP_HOST="alpha.localhost")
    assert connection.schema_name == "public"


def test_platform_host_serves_the_operator_urls(client, tenants):
    response = client.get("/", HTTP_HOST="localhost")
    assert response.status_code == 200
    assert response.json()["admin"] == "/admin/"


def test_unknown_path_on_a_tenant_host_is_a_json_404(client, alpha):
    response = client.get("/no/such/page", HTTP_HOST="alpha.localhost")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
