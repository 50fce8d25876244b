"""Erasing people: their accounts, sessions and messages, and a pseudonym
wherever another tenant's audit log names them.

Shared by a tenant's erasure (its members who belong nowhere else) and a
data-subject request (one person across every tenant).
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connections
from django.db.models import Q
from django_tenants.utils import quote_schema_name as q

from apps.accounts.models import User
from apps.jobs.models import DeadLetter, OutboxMessage
from apps.tenancy import planes, schemas


def pseudonym(user_id: int) -> str:
    """A stable stand-in for an erased person: the same for every mention,
    and without the key no way back to the person."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"user:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"erased-user-{digest[:16]}"


def tenant_schemas(*, skip: str | None = None):
    """(alias, schema) of every tenant schema that has an audit log."""
    for alias, names in schemas.tenant_schemas_by_alias(planes.shard_aliases()).items():
        for schema in names:
            if schema == skip:
                continue
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT to_regclass(%s)", [f"{q(schema)}.audit_entry"])
                if cursor.fetchone()[0] is not None:
                    yield alias, schema


def pseudonymise_audit(users: list[User], *, skip_schema: str | None = None) -> int:
    """Audit entries keep their rows; an erased person's email in them
    becomes a pseudonym (their user id was never more than a number)."""
    if not users:
        return 0
    changed = 0
    for alias, schema in tenant_schemas(skip=skip_schema):
        with connections[alias].cursor() as cursor:
            for user in users:
                cursor.execute(
                    f"UPDATE {q(schema)}.audit_entry SET changes = replace(changes::text, %s, %s)::jsonb "
                    "WHERE changes::text LIKE %s", [user.email, pseudonym(user.pk), f"%{user.email}%"])
                changed += cursor.rowcount
    return changed


def erase_sessions(user_ids: set[int]) -> int:
    # Session data is signed and encoded: decoded one by one (a one-off sweep).
    stale = [s.pk for s in Session.objects.iterator() if int(s.get_decoded().get("_auth_user_id") or 0) in user_ids]
    return Session.objects.filter(pk__in=stale).delete()[0]


def erase_messages_naming(users: list[User]) -> int:
    """Control outbox messages and dead letters whose arguments hold their email (an email to them)."""
    removed = 0
    for user in users:
        for model in (OutboxMessage, DeadLetter):
            removed += model.objects.filter(Q(kwargs__icontains=user.email) | Q(args__icontains=user.email)).delete()[0]
    return removed


def erase_people(users: list[User], *, skip_schema: str | None = None) -> dict:
    """Delete the accounts (Django's cascade takes their memberships) after
    pseudonymising every mention of them; counts for the record."""
    ids = {u.pk for u in users}
    summary = {"users": len(ids), "audit_entries_pseudonymised": pseudonymise_audit(users, skip_schema=skip_schema),
               "sessions": erase_sessions(ids), "messages_naming_them": erase_messages_naming(users)}
    User.objects.filter(pk__in=ids).delete()
    return summary
