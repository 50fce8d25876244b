"""How an export is doing, as the API shows it."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from .models import ExportRequest


def export_stalled(export: ExportRequest, *, now: dt.datetime | None = None) -> bool:
    """Running, but no sign of progress for EXPORT_STALL_SECONDS: its worker
    probably died. The broker gives the export to another worker within the
    visibility timeout (Redis) or at once (RabbitMQ); ``attempts`` then grows."""
    if export.status != ExportRequest.Status.RUNNING:
        return False
    last = export.heartbeat_at or export.created_at
    return last < (now or timezone.now()) - dt.timedelta(seconds=settings.EXPORT_STALL_SECONDS)


def export_status_label(export: ExportRequest, *, now: dt.datetime | None = None) -> str:
    """``status`` for people: "running (attempt 2)" after a retry or a redelivery,
    "stalled (attempt 1)" while a running export shows no progress."""
    if export_stalled(export, now=now):
        return f"stalled (attempt {export.attempts})"
    if export.status == ExportRequest.Status.RUNNING and export.attempts > 1:
        return f"running (attempt {export.attempts})"
    return export.status


def export_list():
    """The active tenant's export requests, newest first."""
    return ExportRequest.objects.order_by("-created_at")
