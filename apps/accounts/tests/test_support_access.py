"""Support access: operators are strangers on tenant hosts unless a grant is active."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from apps.accounts.models import SupportGrant, User
from apps.accounts.support import support_grant_create, support_grant_revoke
from apps.accounts.tokens import issue_user_token
from apps.audit.models import AuditEntry
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(db):
    return User.objects.create_superuser(email="ops@platform.test", password="ops-pass")


def token_call(tenant, email, password):
    return Client(HTTP_HOST=f"{tenant.slug}.localhost").post(
        "/api/v1/auth/token", {"email": email, "password": password}, content_type="application/json")


def bearer(tenant, user):
    return Client(HTTP_HOST=f"{tenant.slug}.localhost",
                  HTTP_AUTHORIZATION=f"Bearer {issue_user_token(user_id=user.pk, tenant_id=tenant.pk)}")


def admin_login(tenant, email, password):
    client = Client(HTTP_HOST=f"{tenant.slug}.localhost")
    client.post("/admin/login/?next=/admin/", {"username": email, "password": password})
    return client


def support_entries(tenant):
    with tenant_activated(tenant):
        return list(AuditEntry.objects.filter(actor_type="support").order_by("id"))


def test_without_a_grant_an_operator_is_a_stranger(alpha, operator):
    assert token_call(alpha, "ops@platform.test", "ops-pass").status_code == 403
    assert bearer(alpha, operator).get("/api/v1/documents").status_code == 403
    assert admin_login(alpha, "ops@platform.test", "ops-pass").get("/admin/").status_code == 302  # back to login
    assert support_entries(alpha) == []


def test_a_grant_opens_one_tenant_for_a_while_and_every_request_is_audited(alpha, beta, operator):
    grant = support_grant_create(tenant_id=alpha.pk, operator=operator, reason="ticket 4711: export stuck",
                                 hours=1, granted_by=operator)
    token = token_call(alpha, "ops@platform.test", "ops-pass")
    assert token.status_code == 201
    api = Client(HTTP_HOST="alpha.localhost", HTTP_AUTHORIZATION=f"Bearer {token.json()['token']}")
    assert api.get("/api/v1/documents").status_code == 200
    created = api.post("/api/v1/documents", {"title": "made by support"}, content_type="application/json")
    assert created.status_code == 201
    assert admin_login(alpha, "ops@platform.test", "ops-pass").get("/admin/").status_code == 200

    entries = support_entries(alpha)
    accesses = [e for e in entries if e.action == "access"]
    assert {(e.changes["method"], e.changes["path"]) for e in accesses} >= {
        ("GET", "/api/v1/documents"), ("POST", "/api/v1/documents"), ("GET", "/admin/")}
    assert all(e.actor_id == operator.pk and e.changes["reason"] == grant.reason for e in accesses)
    # The change itself is attributed to support, not to an ordinary user.
    assert any(e.action == "create" and e.object_type == "document" for e in entries)

    # The grant is for alpha only: beta still sees a stranger.
    assert token_call(beta, "ops@platform.test", "ops-pass").status_code == 403
    assert bearer(beta, operator).get("/api/v1/documents").status_code == 403
    assert support_entries(beta) == []

    support_grant_revoke(grant=grant)
    assert api.get("/api/v1/documents").status_code == 403


def test_an_expired_grant_opens_nothing(alpha, operator):
    grant = support_grant_create(tenant_id=alpha.pk, operator=operator, reason="ticket", hours=1)
    SupportGrant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert bearer(alpha, operator).get("/api/v1/documents").status_code == 403


def test_owners_see_the_grants_of_their_tenant_only(api, alpha, beta, operator):
    support_grant_create(tenant_id=alpha.pk, operator=operator, reason="ticket 1", hours=2)
    listed = api(alpha, role="owner").get("support-access")
    assert listed.status_code == 200
    assert [(g["operator_email"], g["reason"], g["active"]) for g in listed.json()] == [
        ("ops@platform.test", "ticket 1", True)]
    assert api(beta, role="owner").get("support-access").json() == []
    assert api(alpha, role="member").get("support-access").status_code == 403


@pytest.mark.parametrize(("changes", "field"), [
    ({"reason": "  "}, "reason"), ({"hours": 0}, "hours"), ({"hours": 1000}, "hours"),
])
def test_a_grant_needs_a_reason_and_a_bounded_expiry(alpha, operator, changes, field):
    arguments = {"tenant_id": alpha.pk, "operator": operator, "reason": "ticket", "hours": 1, **changes}
    with pytest.raises(ValidationError) as error:
        support_grant_create(**arguments)
    assert field in error.value.message_dict


def test_only_operators_can_be_granted_access(alpha, django_user_model):
    someone = django_user_model.objects.create_user(email="someone@elsewhere.test", password="x")
    with pytest.raises(ValidationError, match="not an active platform operator"):
        support_grant_create(tenant_id=alpha.pk, operator=someone, reason="ticket", hours=1)


def test_operators_grant_access_in_the_operator_admin(alpha, operator):
    client = Client(HTTP_HOST="localhost")
    client.post("/admin/login/?next=/admin/", {"username": "ops@platform.test", "password": "ops-pass"})
    response = client.post("/admin/accounts/supportgrant/add/", {
        "tenant": alpha.pk, "operator": operator.pk, "reason": "ticket 9", "hours": "2"})
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = SupportGrant.objects.get(reason="ticket 9")
    assert grant.is_active and grant.granted_by == operator
    refused = client.post("/admin/accounts/supportgrant/add/", {
        "tenant": alpha.pk, "operator": operator.pk, "reason": "", "hours": "2"})
    assert refused.status_code == 200 and SupportGrant.objects.count() == 1


def test_owners_find_support_requests_in_their_audit_log(api, alpha, operator):
    support_grant_create(tenant_id=alpha.pk, operator=operator, reason="ticket 77", hours=1)
    assert bearer(alpha, operator).get("/api/v1/documents").status_code == 200
    listed = api(alpha, role="owner").get("audit?action=access")
    assert listed.status_code == 200, listed.content
    rows = listed.json()["results"]
    assert rows and rows[0]["actor_type"] == "support" and rows[0]["changes"]["reason"] == "ticket 77"
