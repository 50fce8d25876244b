"""A data-subject request: one person's data across tenants, exported or erased."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from apps.accounts.models import Invitation, Membership, User
from apps.accounts.services import membership_grant
from apps.audit.models import AuditEntry
from apps.audit.services import audit_record
from apps.content.models import Document
from apps.lifecycle import people
from apps.lifecycle.models import SubjectRequest
from apps.lifecycle.subjects import subject_erase, subject_export
from apps.observability.context import Actor, actor_var
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


@pytest.fixture
def person(alpha, gamma, beta):
    """A member of alpha and gamma with documents and audit entries in both, named in beta's log."""
    user = User.objects.create_user(email="subject@people.example", password="pw-12345678")
    for tenant in (alpha, gamma):
        membership_grant(user=user, tenant_id=tenant.pk, role="member")
        with tenant_activated(tenant):
            token = actor_var.set(Actor(type="user", user_id=user.pk))
            try:
                document = Document.objects.create(title=f"by the subject in {tenant.slug}", author_id=user.pk)
                audit_record(action="create", object_type="document", object_id=document.pk, changes={})
            finally:
                actor_var.reset(token)
    with tenant_activated(beta):
        audit_record(action="create", object_type="invitation", object_id=1,
                     changes={"email": [None, "subject@people.example"]})
    Invitation.objects.create(tenant=beta, email=user.email, role="member", token_hash="x" * 64,
                              expires_at="2030-01-01T00:00Z")
    return user


def test_a_person_gets_all_of_their_data_across_tenants(person, alpha, gamma, beta):
    other = User.objects.create_user(email="someone@else.example")
    membership_grant(user=other, tenant_id=alpha.pk, role="member")
    data = subject_export(email="Subject@People.example ", requested_by="dpo")
    assert {m["tenant"] for m in data["memberships"]} == {"alpha", "gamma"}
    assert set(data["tenants"]) == {"alpha", "gamma"}
    assert data["tenants"]["alpha"]["documents"][0]["title"] == "by the subject in alpha"
    assert len(data["tenants"]["gamma"]["audit_entries"]) == 1
    assert [i["tenant"] for i in data["invitations"]] == ["beta"]
    assert "someone@else.example" not in json.dumps(data)
    assert SubjectRequest.objects.get(kind="export").subject == person.email


def test_erasing_a_person_leaves_a_pseudonym_and_the_tenants_their_documents(person, alpha, gamma, beta):
    with pytest.raises(ValidationError, match="reason"):
        subject_erase(email=person.email, requested_by="dpo", reason="")
    record = subject_erase(email=person.email, requested_by="dpo", reason="ticket 42")
    alias = people.pseudonym(person.pk)
    assert record.subject == alias and record.summary["users"] == 1 and record.summary["invitations"] == 1
    assert not User.objects.filter(pk=person.pk).exists()
    assert not Membership.objects.filter(user_id=person.pk).exists()
    assert not Invitation.objects.filter(email=person.email).exists()
    with tenant_activated(beta):
        changes = AuditEntry.objects.filter(object_type="invitation").values_list("changes", flat=True).first()
        assert changes == {"email": [None, alias]}
    with tenant_activated(alpha):
        assert Document.objects.filter(author_id=person.pk).count() == 1  # the tenant's document stays
    assert User.objects.filter(email="owner@alpha.test").exists()


def test_the_only_owner_of_a_tenant_and_operators_are_not_erased_here(alpha):
    with pytest.raises(ValidationError, match="only owner of alpha"):
        subject_erase(email="owner@alpha.test", requested_by="dpo", reason="ticket 43")
    User.objects.create_superuser(email="ops@people.example", password="x")
    with pytest.raises(ValidationError, match="operator"):
        subject_erase(email="ops@people.example", requested_by="dpo", reason="ticket 44")
