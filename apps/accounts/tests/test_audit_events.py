"""Member, invitation and password changes are in the tenant's audit log,
written by the accounts services in their own transaction, whichever route
made them: the API, the tenant's pages, or an operator in the operator admin."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts import services
from apps.accounts.models import Invitation, Membership, PasswordReset, User
from apps.accounts.passwords import ResetTokens, password_reset_complete
from apps.audit.models import AuditEntry
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


def entries(tenant, **filters) -> list[AuditEntry]:
    with tenant_activated(tenant):
        return list(AuditEntry.objects.filter(**filters).order_by("id"))


@pytest.fixture
def operator(db):
    return User.objects.create_superuser(email="ops@platform.test", password="ops-pass")


def operator_admin(operator) -> Client:
    client = Client(HTTP_HOST="localhost")
    client.force_login(operator)
    return client


def test_a_role_change_through_the_api_is_recorded_once(api, alpha):
    owner = api(alpha, role="owner")
    member = api(alpha, role="member").principal
    membership = Membership.objects.get(user=member, tenant_id=alpha.pk)
    assert owner.patch(f"members/{membership.pk}", {"role": "viewer"}).status_code == 200
    [entry] = entries(alpha, object_type="membership", object_id=str(membership.pk))
    assert (entry.action, entry.changes, entry.actor_type, entry.actor_id) == (
        "update", {"role": ["member", "viewer"]}, "user", owner.principal.pk)


def test_an_accepted_invitation_is_the_new_members_doing(api, alpha):
    created = api(alpha, role="admin").post("invitations", {"email": "joiner@people.test", "role": "member"}).json()
    accepted = Client(HTTP_HOST="alpha.localhost").post(
        "/api/v1/invitations/accept", {"token": created["token"], "password": "long-enough-1"},
        content_type="application/json")
    assert accepted.status_code == 201
    joiner = User.objects.get(email="joiner@people.test")
    invitation_rows = entries(alpha, object_type="invitation", object_id=str(created["id"]))
    assert [e.action for e in invitation_rows] == ["create", "update"]
    assert invitation_rows[1].actor_id == joiner.pk and "accepted_at" in invitation_rows[1].changes
    [joined] = entries(alpha, object_type="membership", object_id=str(accepted.json()["id"]))
    assert (joined.action, joined.actor_type, joined.actor_id) == ("create", "user", joiner.pk)
    assert joined.changes == {"user_id": [None, joiner.pk], "role": [None, "member"]}


def test_a_completed_password_reset_is_in_the_tenants_log(alpha):
    user = User.objects.get(email="owner@alpha.test")
    reset = PasswordReset.objects.create(user=user, tenant_id=alpha.pk)
    token = ResetTokens(reset).make_token(user)
    password_reset_complete(tenant_id=alpha.pk, reset_id=str(reset.pk), token=token, password="a-new-password")
    [entry] = entries(alpha, object_type="user", object_id=str(user.pk))
    assert (entry.action, entry.actor_type, entry.actor_id) == ("update", "user", user.pk)
    assert entry.changes == {"password": "reset with an emailed link", "password_reset": reset.pk}


def test_an_audit_row_and_its_change_commit_or_roll_back_together(alpha, monkeypatch):
    """The audit row is written inside the service's transaction: when the
    service fails after writing it, neither the change nor the row stays."""
    import apps.accounts.services as accounts_services

    def broken(invitation):
        raise RuntimeError("outbox down")

    monkeypatch.setattr(accounts_services, "_invitation_email", broken)
    with pytest.raises(RuntimeError):
        services.invitation_create(tenant_id=alpha.pk, email="never@people.test", role="member", invited_by=None)
    assert not Invitation.objects.filter(email="never@people.test").exists()
    assert entries(alpha, object_type="invitation") == []


def test_a_refused_change_writes_no_audit_row(alpha):
    owner = Membership.objects.get(user__email="owner@alpha.test", tenant_id=alpha.pk)
    with pytest.raises(Exception, match="at least one owner"):
        services.membership_remove(membership=owner, acting_role="owner")
    assert entries(alpha, object_type="membership") == []


def test_an_operator_changing_members_in_the_operator_admin_is_in_the_tenants_log(alpha, operator):
    client = operator_admin(operator)
    user = User.objects.create_user(email="added@people.test", password="added-pass-1")
    added = client.post("/admin/accounts/membership/add/", {"user": user.pk, "tenant": alpha.pk, "role": "member"})
    assert added.status_code == 302, added.content.decode()[:1500]
    membership = Membership.objects.get(user=user, tenant_id=alpha.pk)
    changed = client.post(f"/admin/accounts/membership/{membership.pk}/change/", {"role": "admin"})
    assert changed.status_code == 302, changed.content.decode()[:1500]
    removed = client.post(f"/admin/accounts/membership/{membership.pk}/delete/", {"post": "yes"})
    assert removed.status_code == 302
    rows = entries(alpha, object_type="membership", object_id=str(membership.pk))
    assert [(e.action, e.actor_type, e.actor_id) for e in rows] == [
        ("create", "operator", operator.pk), ("update", "operator", operator.pk), ("delete", "operator", operator.pk)]


def test_an_operator_setting_a_members_password_is_in_each_of_the_users_tenants_logs(alpha, gamma, operator):
    user = User.objects.create_user(email="two-tenants@people.test", password="old-password-1")
    services.membership_grant(user=user, tenant_id=alpha.pk, role="admin")
    services.membership_grant(user=user, tenant_id=gamma.pk, role="member")
    response = operator_admin(operator).post(f"/admin/accounts/user/{user.pk}/password/", {
        "password1": "set-by-ops-123", "password2": "set-by-ops-123", "usable_password": "true"})
    assert response.status_code == 302, response.content.decode()[:1500]
    user.refresh_from_db()
    assert user.check_password("set-by-ops-123")
    for tenant in (alpha, gamma):
        [entry] = entries(tenant, object_type="user", object_id=str(user.pk))
        assert (entry.actor_type, entry.actor_id, entry.changes) == (
            "operator", operator.pk, {"password": "set by a platform operator"})


def test_the_tenant_admin_shows_an_operator_as_one(alpha, operator):
    from apps.accounts.services import membership_add
    from apps.observability.context import Actor, actor_var

    user = User.objects.create_user(email="shown@people.test", password="shown-pass-1")
    token = actor_var.set(Actor(type="user", user_id=operator.pk))
    try:
        membership_add(user=user, tenant_id=alpha.pk, role="viewer")
    finally:
        actor_var.reset(token)
    owner = User.objects.get(email="owner@alpha.test")
    page = Client(HTTP_HOST="alpha.localhost")
    page.force_login(owner)
    content = page.get("/admin/audit-log/", {"object_type": "membership"}).content.decode()
    assert "ops@platform.test (platform operator)" in content
