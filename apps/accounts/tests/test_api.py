"""Tokens, API keys, members and invitations through the API."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.accounts.models import ApiKey, Invitation, Membership
from conftest import ApiClient

pytestmark = pytest.mark.django_db


def test_token_for_a_members_email_and_password(alpha):
    anonymous = ApiClient(alpha, None)
    response = anonymous.post("auth/token", {"email": "owner@alpha.test", "password": "alpha-pass"})
    assert response.status_code == 201
    token = response.json()["token"]
    me = ApiClient(alpha, token).get("me").json()
    assert me["role"] == "owner" and me["email"] == "owner@alpha.test" and me["tenant"] == "alpha"
    assert anonymous.post("auth/token", {"email": "owner@alpha.test", "password": "wrong"}).status_code == 403
    # beta's owner is not a member of alpha
    assert anonymous.post("auth/token", {"email": "owner@beta.test", "password": "beta-pass"}).status_code == 403
    assert anonymous.post("auth/token", {"email": "not-an-email"}).status_code == 400


def test_api_key_is_shown_once_stored_hashed_and_revocable(api, alpha):
    admin = api(alpha, role="admin")
    created = admin.post("api-keys", {"name": "ci", "scopes": ["write"]})
    assert created.status_code == 201
    key = created.json()["key"]
    stored = ApiKey.objects.get(pk=created.json()["id"])
    assert key not in (stored.key_hash, stored.prefix) and key.startswith(f"sk_{stored.prefix}_")
    listed = admin.get("api-keys").json()
    assert stored.pk in [item["id"] for item in listed]
    assert all("key" not in item for item in listed)
    with_key = ApiClient(alpha, key)
    assert with_key.get("documents").status_code == 200
    stored.refresh_from_db()
    assert stored.last_used_at is not None
    assert admin.delete(f"api-keys/{stored.pk}").status_code == 204
    assert with_key.get("documents").status_code == 401


def test_api_keys_and_members_need_admin(api, alpha):
    member = api(alpha, role="member")
    assert member.get("api-keys").status_code == 403
    assert member.post("api-keys", {"name": "x", "scopes": ["read"]}).status_code == 403
    assert member.get("members").status_code == 200
    assert member.post("invitations", {"email": "new@x.test"}).status_code == 403
    write_key = api(alpha, via="key", scopes=["write"])
    assert write_key.post("api-keys", {"name": "x", "scopes": ["admin"]}).status_code == 403


@pytest.mark.parametrize("body", [{"name": "", "scopes": ["read"]}, {"name": "x", "scopes": []},
                                  {"name": "x", "scopes": ["root"]}, {"name": "x"}])
def test_api_key_input_errors(api, alpha, body):
    response = api(alpha, role="admin").post("api-keys", body)
    assert response.status_code == 400 and response.json()["errors"]


def test_api_key_quota(api, alpha):
    admin = api(alpha, role="admin")
    for i in range(3):
        assert admin.post("api-keys", {"name": f"k{i}", "scopes": ["read"]}).status_code == 201
    over = admin.post("api-keys", {"name": "k3", "scopes": ["read"]})
    assert over.status_code == 403 and over.json()["quota"] == "api_keys"


def test_member_roles_change_and_the_last_owner_stays(api, alpha):
    owner = api(alpha, role="owner")
    viewer_user = api(alpha, role="viewer").principal
    membership = Membership.objects.get(user=viewer_user, tenant=alpha)
    assert owner.patch(f"members/{membership.pk}", {"role": "member"}).json()["role"] == "member"
    admin = api(alpha, role="admin")
    assert admin.patch(f"members/{membership.pk}", {"role": "owner"}).status_code == 403
    owners = Membership.objects.filter(tenant=alpha, role="owner")
    for extra in owners.exclude(user=owner.principal):
        extra.delete()
    last = owners.get()
    response = owner.patch(f"members/{last.pk}", {"role": "admin"})
    assert response.status_code == 400 and "at least one owner" in response.content.decode()
    assert owner.delete(f"members/{membership.pk}").status_code == 204


def test_invitation_accept_creates_the_account_and_membership(api, alpha):
    admin = api(alpha, role="admin")
    invited = admin.post("invitations", {"email": "New.Person@Example.com", "role": "viewer"})
    assert invited.status_code == 201
    token = invited.json()["token"]
    assert [i["email"] for i in admin.get("invitations").json()] == ["new.person@example.com"]
    anonymous = ApiClient(alpha, None)
    assert anonymous.post("invitations/accept", {"token": token, "password": "short"}).status_code == 400
    accepted = anonymous.post("invitations/accept", {"token": token, "password": "long-enough-password"})
    assert accepted.status_code == 201 and accepted.json()["role"] == "viewer"
    again = anonymous.post("invitations/accept", {"token": token, "password": "long-enough-password"})
    assert again.status_code == 400 and "already accepted" in again.content.decode()
    login = anonymous.post("auth/token", {"email": "new.person@example.com", "password": "long-enough-password"})
    assert login.status_code == 201


def test_expired_or_foreign_invitations_are_refused(api, alpha, beta):
    created = api(alpha, role="admin").post("invitations", {"email": "late@example.com"}).json()
    assert ApiClient(beta, None).post("invitations/accept", {"token": created["token"], "password": "x" * 12}).status_code == 400
    Invitation.objects.filter(pk=created["id"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = ApiClient(alpha, None).post("invitations/accept", {"token": created["token"], "password": "x" * 12})
    assert response.status_code == 400 and "expired" in response.content.decode()


def test_credentials_of_one_tenant_are_rejected_on_another_host(api, alpha, beta):
    alpha_token = api(alpha, role="owner")
    alpha_key = api(alpha, via="key", scopes=["admin"])
    for client in (alpha_token, alpha_key):
        on_beta = ApiClient(beta, client.client.defaults["HTTP_AUTHORIZATION"].split(" ", 1)[1])
        response = on_beta.get("documents")
        assert response.status_code == 401
        assert "not valid for this tenant" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("patch", "members/{member}", {"role": "emperor"}), ("patch", "members/{member}", {"role": 3}),
     ("patch", "members/{member}", {"role": "viewer", "extra": 1}), ("post", "invitations", {"email": "nope"}),
     ("post", "invitations", {"email": "x@example.com", "role": "owner"}), ("post", "invitations", []),
     ("post", "invitations/accept", {"token": ""}), ("post", "invitations/accept", {"token": "unknown-token"}),
     ("post", "auth/token", '{"email": ')],
)
def test_member_and_invitation_input_errors_are_400(api, alpha, method, path, body):
    admin = api(alpha, role="owner")
    member = Membership.objects.get(user=api(alpha, role="viewer").principal, tenant=alpha)
    client = admin if "accept" not in path and "token" not in path else ApiClient(alpha, None)
    response = getattr(client, method)(path.format(member=member.pk), body)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"


def test_unknown_member_or_key_is_404(api, alpha):
    admin = api(alpha, role="owner")
    assert admin.patch("members/999999", {"role": "viewer"}).status_code == 404
    assert admin.delete("api-keys/999999").status_code == 404


def test_only_an_owner_removes_or_demotes_an_owner_by_every_path(api, alpha, django_user_model):
    from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
    from django.test import Client

    from apps.accounts import services

    owner = api(alpha, role="owner")
    second_owner = api(alpha, role="owner")
    admin = api(alpha, role="admin")
    target = Membership.objects.get(tenant=alpha, user=second_owner.principal)
    # Two owners: an admin still may not remove or demote either (DELETE used to allow it).
    assert admin.delete(f"members/{target.pk}").status_code == 403
    assert admin.patch(f"members/{target.pk}", {"role": "member"}).status_code == 403
    assert Membership.objects.get(pk=target.pk).role == "owner"
    with pytest.raises(DjangoPermissionDenied):
        services.membership_remove(membership=target, acting_role="admin")
    with pytest.raises(DjangoPermissionDenied):
        services.membership_change_role(membership=target, role="viewer", acting_role="admin")
    # An owner may.
    assert owner.delete(f"members/{target.pk}").status_code == 204

    # The operator admin acts as an owner but keeps the last owner.
    for extra in Membership.objects.filter(tenant=alpha, role="owner").exclude(user=owner.principal):
        extra.delete()
    last = Membership.objects.get(tenant=alpha, role="owner")
    django_user_model.objects.create_superuser(email="ops@platform.test", password="ops-pass")
    operator = Client(HTTP_HOST="localhost")
    operator.post("/admin/login/?next=/admin/", {"username": "ops@platform.test", "password": "ops-pass"})
    demote = operator.post(f"/admin/accounts/membership/{last.pk}/change/", {"role": "member"})
    assert demote.status_code == 200 and b"at least one owner" in demote.content
    assert operator.post(f"/admin/accounts/membership/{last.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Membership.objects.get(pk=last.pk).role == "owner"
