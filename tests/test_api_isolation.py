"""Every API endpoint, across tenants on the same shard and on different shards:
one tenant's credentials open nothing on another's host, and nothing one
tenant made is visible or changeable through another."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.accounts.models import ApiKey, Membership
from conftest import ApiClient

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "me"), ("get", "members"), ("get", "invitations"), ("post", "invitations"), ("get", "api-keys"),
    ("post", "api-keys"), ("get", "documents"), ("post", "documents"), ("post", "documents/bulk"),
    ("get", "documents/1"), ("patch", "documents/1"), ("delete", "documents/1"), ("get", "search?q=x"),
    ("post", "events"), ("get", "usage"), ("get", "usage/events"), ("get", "audit"), ("get", "exports"),
    ("post", "exports"), ("get", "exports/00000000-0000-0000-0000-000000000001"), ("patch", "members/1"),
    ("delete", "members/1"), ("delete", "api-keys/1"),
]


@pytest.fixture(params=["gamma", "beta"], ids=["same-shard", "other-shard"])
def other(request, tenants):
    return tenants[request.param]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_credentials_of_alpha_open_nothing_on_another_tenants_host(api, alpha, other, method, path):
    for client in (api(alpha, role="owner"), api(alpha, via="key", scopes=["admin"])):
        credential = client.client.defaults["HTTP_AUTHORIZATION"].split(" ", 1)[1]
        response = getattr(ApiClient(other, credential), method)(path)
        assert response.status_code == 401, (path, response.content)


def test_nothing_alpha_made_is_visible_or_changeable_from_another_tenant(api, alpha, other, outbox_inline,
                                                                        django_capture_on_commit_callbacks):
    owner_a = api(alpha, role="owner")
    with django_capture_on_commit_callbacks(execute=True, using=alpha.shard.alias):
        doc = owner_a.post("documents", {"title": "alphasecret plans", "body": "alphasecret"}).json()
    owner_a.post("events", {"events": [{"type": "alpha.only", "timestamp": timezone.now().isoformat()}]})
    export = owner_a.post("exports", {"kind": "documents"}).json()
    key = owner_a.post("api-keys", {"name": "alpha key", "scopes": ["read"]}).json()
    owner_a.post("invitations", {"email": "invitee-of-alpha@example.com"})
    alpha_membership = Membership.objects.get(user=owner_a.principal, tenant=alpha)

    owner_b = api(other, role="owner")
    assert owner_b.get(f"documents/{doc['id']}").status_code == 404
    assert owner_b.patch(f"documents/{doc['id']}", {"title": "x"}, if_match="*").status_code == 404
    assert owner_b.delete(f"documents/{doc['id']}", if_match="*").status_code == 404
    assert "alphasecret" not in owner_b.get("documents").content.decode()
    assert owner_b.get("search?q=alphasecret").json()["results"] == []
    assert owner_b.get(f"exports/{export['id']}").status_code == 404
    assert export["id"] not in owner_b.get("exports").content.decode()
    assert "alpha.only" not in owner_b.get("usage/events").content.decode()
    assert owner_b.get("usage").json()["quotas"]["events_per_month"]["used"] == 0
    assert "alphasecret" not in owner_b.get("audit").content.decode()
    assert "alpha key" not in owner_b.get("api-keys").content.decode()
    assert owner_b.delete(f"api-keys/{key['id']}").status_code == 404
    assert ApiKey.objects.get(pk=key["id"]).revoked_at is None
    assert "invitee-of-alpha" not in owner_b.get("invitations").content.decode()
    assert owner_b.patch(f"members/{alpha_membership.pk}", {"role": "viewer"}).status_code == 404
    assert owner_b.delete(f"members/{alpha_membership.pk}").status_code == 404
    assert owner_a.principal.email not in owner_b.get("members").content.decode()
    # ...and alpha still sees all of it unchanged.
    assert owner_a.get(f"documents/{doc['id']}").json()["title"] == "alphasecret plans"
    assert owner_a.get("search?q=alphasecret").json()["results"][0]["id"] == doc["id"]


def test_audit_is_for_owners_and_admins(api, alpha):
    assert api(alpha, role="member").get("audit").status_code == 403
    assert api(alpha, via="key", scopes=["write"]).get("audit").status_code == 403
    assert api(alpha, role="admin").get("audit").status_code == 200
    assert api(alpha, via="key", scopes=["admin"]).get("audit").status_code == 200


def test_tenant_admin_writes_are_audited(alpha):
    from django.test import Client

    admin = Client(HTTP_HOST="alpha.localhost")
    admin.post("/admin/login/?next=/admin/", {"username": "owner@alpha.test", "password": "alpha-pass"})
    admin.post("/admin/content/document/add/", {"title": "From the admin", "body": "", "status": "draft"})
    from apps.audit.models import AuditEntry
    from apps.tenancy.activation import tenant_activated

    with tenant_activated(alpha):
        entry = AuditEntry.objects.get(object_type="document", action="create")
    assert entry.actor_type == "user" and entry.changes["title"] == [None, "From the admin"]
    assert entry.request_id
