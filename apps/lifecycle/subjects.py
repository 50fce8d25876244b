"""A data-subject request: one person's data across every tenant, as a copy or erased.

What a person is in this platform: their account, their memberships, the
invitations sent to them or by them, the API keys and plan changes they
made, and in each tenant's schema the audit entries they caused and the
documents they wrote. An erasure deletes the account (and so its
memberships and sessions), the invitations addressed to them, and messages
naming them; every tenant's audit log keeps its entries with a pseudonym
for their email. Their documents stay with the tenants that own them: the
author is a number that no longer leads to anyone.
"""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django_tenants.utils import quote_schema_name as q

from apps.accounts.models import ApiKey, Invitation, Membership, User
from apps.billing.models import PlanChange
from apps.tenancy.models import Tenant

from . import people, redis_keys
from .models import SubjectRequest


def _iso(value):
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def _user(email: str) -> User:
    user = User.objects.filter(email=(email or "").strip().lower()).first()
    if user is None:
        raise ValidationError({"email": f"No account with the email '{email}'."})
    return user


def _rows(cursor) -> list[dict]:
    names = [c.name for c in cursor.description]
    return [{n: _iso(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


def _tenant_data(user: User) -> dict:
    """Per tenant schema: the audit entries they caused, the documents they wrote."""
    slugs = dict(Tenant.objects.values_list("schema_name", "slug"))
    found = {}
    for alias, schema in people.tenant_schemas():
        with connections[alias].cursor() as cursor:
            cursor.execute(f"SELECT occurred_at, action, object_type, object_id, changes FROM {q(schema)}.audit_entry "
                           "WHERE actor_id = %s ORDER BY occurred_at, id", [user.pk])
            audit = _rows(cursor)
            cursor.execute(f"SELECT id, title, status, created_at, updated_at FROM {q(schema)}.content_document "
                           "WHERE author_id = %s ORDER BY id", [user.pk])
            documents = _rows(cursor)
        if audit or documents:
            found[slugs.get(schema, schema)] = {"audit_entries": audit, "documents": documents}
    return found


def subject_export(*, email: str, requested_by: str, reason: str = "") -> dict:
    """Everything the platform holds about one person, as one JSON-ready document."""
    user = _user(email)
    data = {
        "account": {"email": user.email, "first_name": user.first_name, "last_name": user.last_name,
                    "date_joined": _iso(user.date_joined), "last_login": _iso(user.last_login),
                    "is_active": user.is_active},
        "memberships": [{"tenant": m.tenant.slug, "role": m.role, "since": _iso(m.created_at)}
                        for m in Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__slug")],
        "invitations": [{"tenant": i.tenant.slug, "email": i.email, "role": i.role, "invited_by_them": i.invited_by_id == user.pk,
                         "created_at": _iso(i.created_at), "accepted_at": _iso(i.accepted_at)}
                        for i in Invitation.objects.filter(email=user.email).union(
                            Invitation.objects.filter(invited_by=user)).order_by("created_at")],
        "api_keys_created": [{"tenant": k.tenant.slug, "name": k.name, "prefix": k.prefix,
                              "created_at": _iso(k.created_at), "revoked_at": _iso(k.revoked_at)}
                             for k in ApiKey.objects.filter(created_by=user).select_related("tenant")],
        "plan_changes_made": [{"tenant": c.tenant.slug, "to_plan": c.to_plan.code, "changed_at": _iso(c.changed_at)}
                              for c in PlanChange.objects.filter(changed_by=user).select_related("tenant", "to_plan")],
        "tenants": _tenant_data(user),
    }
    SubjectRequest.objects.create(kind=SubjectRequest.Kind.EXPORT, subject=user.email, user_id=user.pk,
                                  requested_by=requested_by, reason=reason,
                                  summary={"tenants": sorted(data["tenants"]), "memberships": len(data["memberships"])})
    return data


def _refuse(user: User) -> None:
    if user.is_staff or user.is_superuser:
        raise ValidationError({"email": "A platform operator's account is closed by the operators, not erased here."})
    sole = [m.tenant.slug for m in Membership.objects.filter(user=user, role=Membership.Role.OWNER)
            .select_related("tenant")
            if not Membership.objects.filter(tenant_id=m.tenant_id, role=Membership.Role.OWNER)
            .exclude(user=user).exists()]
    if sole:
        raise ValidationError({"email": f"{user.email} is the only owner of {', '.join(sorted(sole))}: another owner "
                                        "must be named, or the tenant offboarded, first."})


def subject_erase(*, email: str, requested_by: str, reason: str) -> SubjectRequest:
    """Erase one person across every tenant; the record names them by pseudonym."""
    if not reason.strip():
        raise ValidationError({"reason": "Say why (the request's reference, say)."})
    user = _user(email)
    _refuse(user)
    who = redis_keys.Identity(tenant_id=None, user_ids=[user.pk], user_emails=[user.email])
    with transaction.atomic(using="default"):
        invitations = Invitation.objects.filter(email=user.email).delete()[0]
        summary = {**people.erase_people([user]), "invitations": invitations}
        SubjectRequest.objects.filter(user_id=user.pk).update(subject=people.pseudonym(user.pk))
        record = SubjectRequest.objects.create(kind=SubjectRequest.Kind.ERASE, subject=people.pseudonym(user.pk),
                                               user_id=user.pk, requested_by=requested_by, reason=reason.strip(),
                                               summary=summary)
    summary["redis"] = redis_keys.erase_keys(who)
    SubjectRequest.objects.filter(pk=record.pk).update(summary=summary)
    return record
