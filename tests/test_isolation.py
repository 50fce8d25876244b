"""Tenant isolation: what one tenant writes, another cannot see or change."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.content.models import Document
from apps.content.services import document_create
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


def logged_in(host: str, email: str, password: str) -> Client:
    client = Client(HTTP_HOST=host)
    response = client.post("/admin/login/?next=/admin/", {"username": email, "password": password})
    assert response.status_code == 302, response.content[:500]
    return client


def test_orm_with_beta_active_cannot_see_or_change_alphas_rows(alpha, beta):
    with tenant_activated(alpha):
        doc = document_create(title="Alpha secret", body="for alpha only")
    with tenant_activated(beta):
        assert not Document.objects.filter(pk=doc.pk).exists()
        assert not Document.objects.filter(title="Alpha secret").exists()
        assert Document.objects.filter(pk=doc.pk).update(title="hijacked") == 0
        assert Document.objects.filter(pk=doc.pk).delete()[0] == 0
    with tenant_activated(alpha):
        assert Document.objects.get(pk=doc.pk).title == "Alpha secret"


def test_rows_live_in_the_tenants_own_schema(alpha, gamma):
    from django.db import connections

    with tenant_activated(alpha):
        document_create(title="where am I")
    with connections["shard_main"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM t_alpha.content_document WHERE title = 'where am I'")
        assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT count(*) FROM t_gamma.content_document WHERE title = 'where am I'")
        assert cursor.fetchone()[0] == 0


def test_admin_on_alpha_host_creates_a_row_beta_host_cannot_see_or_change(alpha, beta):
    alpha_admin = logged_in("alpha.localhost", "owner@alpha.test", "alpha-pass")
    response = alpha_admin.post("/admin/content/document/add/", {"title": "Alpha plan", "body": "secret", "status": "draft"})
    assert response.status_code == 302
    with tenant_activated(alpha):
        doc = Document.objects.get(title="Alpha plan")
    assert b"Alpha plan" in alpha_admin.get("/admin/content/document/").content

    beta_admin = logged_in("beta.localhost", "owner@beta.test", "beta-pass")
    assert b"Alpha plan" not in beta_admin.get("/admin/content/document/").content
    change_url = f"/admin/content/document/{doc.pk}/change/"
    response = beta_admin.get(change_url)
    assert response.status_code == 302  # "doesn't exist" -> back to the admin index
    beta_admin.post(change_url, {"title": "hijacked", "body": ""})
    beta_admin.post(f"/admin/content/document/{doc.pk}/delete/", {"post": "yes"})
    with tenant_activated(alpha):
        doc.refresh_from_db()
        assert doc.title == "Alpha plan"


def test_a_session_from_alpha_opens_nothing_on_beta_host(alpha, beta):
    alpha_admin = logged_in("alpha.localhost", "owner@alpha.test", "alpha-pass")
    # The test client sends the cookie to every host; a browser would not.
    response = alpha_admin.get("/admin/content/document/", HTTP_HOST="beta.localhost")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_alpha_owner_cannot_log_in_to_beta_admin(alpha, beta):
    client = Client(HTTP_HOST="beta.localhost")
    response = client.post("/admin/login/?next=/admin/", {"username": "owner@alpha.test", "password": "alpha-pass"})
    assert response.status_code == 200
    assert b"not an owner or admin of this tenant" in response.content


def test_tenant_owner_is_not_an_operator(alpha):
    client = Client(HTTP_HOST="localhost")
    response = client.post("/admin/login/?next=/admin/", {"username": "owner@alpha.test", "password": "alpha-pass"})
    assert response.status_code == 200  # login form again: not staff


def test_operator_admin_lists_tenants_and_domains(alpha, beta, django_user_model):
    django_user_model.objects.create_superuser(email="ops@platform.test", password="ops-pass")
    ops = logged_in("localhost", "ops@platform.test", "ops-pass")
    page = ops.get("/admin/tenancy/tenant/").content
    assert b"alpha" in page and b"beta" in page
    assert b"alpha.localhost" in ops.get("/admin/tenancy/domain/").content


def test_admin_of_two_tenants_sees_no_names_from_one_on_the_other(alpha, beta, django_user_model):
    from apps.accounts.services import membership_grant

    both = django_user_model.objects.create_user(email="both@tenants.test", password="both-pass")
    membership_grant(user=both, tenant_id=alpha.pk, role="admin")
    membership_grant(user=both, tenant_id=beta.pk, role="admin")
    on_alpha = logged_in("alpha.localhost", "both@tenants.test", "both-pass")
    on_alpha.post("/admin/content/document/add/", {"title": "Alpha merger memo", "body": "", "status": "draft"})
    on_beta = logged_in("beta.localhost", "both@tenants.test", "both-pass")
    page = on_beta.get("/admin/").content
    assert b"Content" in page  # the tenant app is listed
    assert b"Alpha merger memo" not in page
