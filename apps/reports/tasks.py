from __future__ import annotations

import os

from celery import shared_task
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from apps.analytics.selectors import event_list
from apps.content.selectors import document_list
from apps.jobs.base import TenantTask
from apps.jobs.errors import PermanentError
from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias

from .exporting import DOCUMENT_COLUMNS, EVENT_COLUMNS, write_export
from .models import ExportRequest


def _rows(export: ExportRequest):
    """The export's rows, filtered by the same selectors as the API's lists
    (one home for each filter's rules, e.g. tags are matched lower-cased)."""
    filters = export.filters
    if export.kind == ExportRequest.Kind.DOCUMENTS:
        documents = document_list(status=filters.get("status") or None, tag=filters.get("tag") or None).order_by("pk")
        return documents.count(), documents.values_list(*DOCUMENT_COLUMNS).iterator(chunk_size=2000), DOCUMENT_COLUMNS
    events = event_list(event_type=filters.get("type") or None, since=filters.get("since") or None,
                        until=filters.get("until") or None).order_by("occurred_at", "pk")
    return events.count(), events.values_list(*EVENT_COLUMNS).iterator(chunk_size=2000), EVENT_COLUMNS


class ExportTask(TenantTask):
    abstract = True

    def gave_up(self, exc, args, kwargs) -> None:
        """Dead-lettered: the export says failed instead of running forever,
        and whoever asked for it is told by email (once per export)."""
        from .services import export_fail

        export_id = args[0] if args else (kwargs or {}).get("export_id")
        with transaction.atomic(using=tenant_write_alias()):
            export_fail(export_id=export_id, error=f"{type(exc).__name__}: {exc}")
            export = ExportRequest.objects.using(tenant_write_alias()).filter(pk=export_id).first()
            if export is not None:
                _email_requester(export, "export_failed", {"kind": export.kind, "format": export.format})
                if export.status == ExportRequest.Status.FAILED:
                    _export_event("export.failed", export, error=export.error)


def _export_event(event_type: str, export: ExportRequest, **data) -> None:
    """export.completed / export.failed, recorded in this transaction (for webhooks)."""
    from apps.outbox.services import tenant_events_emit

    tenant_events_emit(event_type, [{"object_id": str(export.pk), "data": {
        "id": str(export.pk), "kind": export.kind, "format": export.format, **data}}])


def _email_requester(export: ExportRequest, template: str, context: dict) -> None:
    """Queue ``template`` to whoever asked for the export, in the tenant's
    outbox. The message names the export; the email's link is made by the
    worker that sends it (apps/reports/emails.py), never stored."""
    from apps.accounts.selectors import user_emails
    from apps.notifications.tasks import send_email
    from apps.outbox.services import tenant_outbox_enqueue

    recipient = user_emails(user_ids=[export.requested_by_id]).get(export.requested_by_id)
    if not recipient:
        return
    tenant = require_active_tenant()
    name = template.replace("_", "-")
    tenant_outbox_enqueue(send_email, kwargs={
        "to": [recipient], "template": template, "context": {"tenant_name": tenant.name, **context},
        "refs": {"export_id": str(export.pk)}, "effect_key": f"{name}:{export.pk}",
    })


@shared_task(base=ExportTask, name="reports.run_export")
def run_export(export_id: str) -> str:
    """Produce an export file. Idempotent: a finished export is not redone; an
    interrupted one starts over and overwrites its file."""
    from .services import ExportHeartbeat, export_start

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
            _email_requester(export, "report_ready", {
                "kind": export.kind, "format": export.format, "rows": count,
                "valid_hours": settings.EXPORT_DOWNLOAD_SECONDS // 3600})
        _export_event("export.completed", export, rows=count)
    return stored
