"""Writes to the audit log. Called by other apps' services inside their
transaction, so an audit entry exists exactly when its change does."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterable

from django.utils import timezone

from apps.observability.context import actor_var, request_id_var

from .models import AuditEntry


def _plain(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def snapshot(instance, fields: Iterable[str]) -> dict:
    """The audited fields of a model instance, as JSON-safe values."""
    return {name: _plain(getattr(instance, name)) for name in fields}


def diff(before: dict, after: dict) -> dict:
    """{field: [before, after]} for the fields whose value changed."""
    return {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def _entry(action: str, object_type: str, object_id, changes: dict) -> AuditEntry:
    actor = actor_var.get()
    return AuditEntry(
        occurred_at=timezone.now(),
        actor_type=actor.type,
        actor_id=actor.user_id,
        api_key_id=actor.api_key_id,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        request_id=request_id_var.get() or "",
        changes=changes,
    )


def audit_record(*, action: str, object_type: str, object_id, changes: dict) -> AuditEntry:
    """Record one change by the current actor (request/task context)."""
    entry = _entry(action, object_type, object_id, changes)
    entry.save()
    return entry


def audit_record_many(*, action: str, object_type: str, items: list[tuple[object, dict]]) -> None:
    """Record many changes of one kind in one INSERT (bulk operations)."""
    AuditEntry.objects.bulk_create([_entry(action, object_type, oid, changes) for oid, changes in items], batch_size=500)
