"""Reads of the audit log."""

from __future__ import annotations

from .models import AuditEntry


def audit_entries(*, object_type: str | None = None, object_id: str | None = None, actor_id: int | None = None,
                  action: str | None = None, since=None, until=None):
    entries = AuditEntry.objects.all()
    if object_type:
        entries = entries.filter(object_type=object_type)
    if object_id:
        entries = entries.filter(object_id=object_id)
    if actor_id is not None:
        entries = entries.filter(actor_id=actor_id)
    if action:
        entries = entries.filter(action=action)
    if since:
        entries = entries.filter(occurred_at__gte=since)
    if until:
        entries = entries.filter(occurred_at__lt=until)
    return entries
