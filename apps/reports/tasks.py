from __future__ import annotations

import os

from celery import shared_task
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from apps.analytics.models import Event
from apps.content.models import Document
from apps.jobs.base import TenantTask
from apps.jobs.errors import PermanentError
from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias

from .exporting import DOCUMENT_COLUMNS, EVENT_COLUMNS, write_export
from .models import ExportRequest


def _rows(export: ExportRequest):
    filters = export.filters
    if export.kind == ExportRequest.Kind.DOCUMENTS:
        documents = Document.objects.order_by("pk")
        if filters.get("status"):
            documents = documents.filter(status=filters["status"])
        if filters.get("tag"):
            documents = documents.filter(tags__contains=[filters["tag"]])
        return documents.count(), documents.values_list(*DOCUMENT_COLUMNS).iterator(chunk_size=2000), DOCUMENT_COLUMNS
    events = Event.objects.order_by("occurred_at", "pk")
    if filters.get("type"):
        events = events.filter(event_type=filters["type"])
    if filters.get("since"):
        events = events.filter(occurred_at__gte=filters["since"])
    if filters.get("until"):
        events = events.filter(occurred_at__lt=filters["until"])
    return events.count(), events.values_list(*EVENT_COLUMNS).iterator(chunk_size=2000), EVENT_COLUMNS


class ExportTask(TenantTask):
    abstract = True

    def gave_up(self, exc, args, kwargs) -> None:
        """Dead-lettered: the export says failed instead of running forever."""
        from .services import export_fail

        export_id = args[0] if args else (kwargs or {}).get("export_id")
        export_fail(export_id=export_id, error=f"{type(exc).__name__}: {exc}")


@shared_task(base=ExportTask, name="reports.run_export")
def run_export(export_id: str) -> str:
    """Produce an export file. Idempotent: a finished export is not redone; an
    interrupted one starts over and overwrites its file."""
    from apps.notifications.tasks import send_email
    from apps.outbox.services import tenant_outbox_enqueue

    from .services import ExportHeartbeat, download_url, export_start

    export = ExportRequest.objects.using(tenant_write_alias()).filter(pk=export_id).first()
    if export is None:
        raise PermanentError(f"no export {export_id}")
    if export.status == ExportRequest.Status.DONE:
        return "already done"
    export_start(export_id=export.pk)  # running (attempt n) before the first, maybe long, query
    heartbeat = ExportHeartbeat(export.pk)
    total, rows, columns = _rows(export)
    heartbeat(0, rows_total=total)
    path, count = write_export(rows, columns, export.format, progress=heartbeat, every=1000)
    tenant = require_active_tenant()
    name = f"exports/{tenant.slug}/{export.pk}.{export.format}"
    try:
        if default_storage.exists(name):
            default_storage.delete(name)
        with open(path, "rb") as handle:
            stored = default_storage.save(name, File(handle))
    finally:
        os.unlink(path)
    with transaction.atomic(using=tenant_write_alias()):
        ExportRequest.objects.filter(pk=export.pk).update(
            status=ExportRequest.Status.DONE, rows_done=count, file_name=stored, finished_at=timezone.now()
        )
        if export.requested_by_id:
            from apps.accounts.models import User

            recipient = User.objects.filter(pk=export.requested_by_id).values_list("email", flat=True).first()
            if recipient:
                tenant_outbox_enqueue(send_email, kwargs={
                    "to": [recipient], "template": "report_ready",
                    "context": {"tenant_name": tenant.name, "kind": export.kind, "format": export.format,
                                "rows": count, "url": download_url(tenant, export, absolute=True),
                                "valid_hours": settings.EXPORT_DOWNLOAD_SECONDS // 3600},
                    "effect_key": f"report-ready:{export.pk}",
                })
    return stored
