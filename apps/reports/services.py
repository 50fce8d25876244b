"""Export requests. The export job itself runs in a worker (exports queue)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import audit_record
from apps.tenancy.routers import tenant_write_alias

from .models import ExportRequest

ALLOWED_FILTERS = {
    ExportRequest.Kind.DOCUMENTS: {"status", "tag"},
    ExportRequest.Kind.EVENTS: {"type", "since", "until"},
}


def export_request(*, kind: str, format: str, filters: dict, requested_by_id: int | None) -> ExportRequest:
    if kind not in ExportRequest.Kind.values:
        raise ValidationError({"kind": f"Choose one of {', '.join(ExportRequest.Kind.values)}."})
    if format not in ExportRequest.Format.values:
        raise ValidationError({"format": f"Choose one of {', '.join(ExportRequest.Format.values)}."})
    unknown = sorted(set(filters) - ALLOWED_FILTERS[kind])
    if unknown:
        raise ValidationError({"filters": f"Unknown filter(s) {', '.join(unknown)} for {kind}."})
    from apps.outbox.services import tenant_outbox_enqueue

    from .tasks import run_export

    with transaction.atomic(using=tenant_write_alias()):
        export = ExportRequest.objects.create(kind=kind, format=format, filters=filters, requested_by_id=requested_by_id)
        audit_record(action="create", object_type="export", object_id=export.pk,
                     changes={"kind": [None, kind], "format": [None, format]})
        tenant_outbox_enqueue(run_export, args=[str(export.pk)])
    return export


def export_start(*, export_id) -> None:
    """A worker starts the export, or starts it over after a retry or after
    its previous worker died: one more attempt, progress from zero."""
    ExportRequest.objects.filter(pk=export_id).update(
        status=ExportRequest.Status.RUNNING, attempts=F("attempts") + 1, rows_done=0, rows_total=None, error="",
        heartbeat_at=timezone.now())


def export_fail(*, export_id, error: str) -> None:
    """The export gave up (its task is a dead letter now; a replay starts it over)."""
    ExportRequest.objects.filter(pk=export_id).exclude(status=ExportRequest.Status.DONE).update(
        status=ExportRequest.Status.FAILED, error=error[:2000], finished_at=timezone.now())


class ExportHeartbeat:
    """The progress callback of a running export: records rows done and a
    heartbeat, at most every EXPORT_HEARTBEAT_SECONDS (one UPDATE, however
    fast the rows come)."""

    def __init__(self, export_id):
        self.export_id = export_id
        self.last = time.monotonic()

    def __call__(self, rows_done: int, *, rows_total: int | None = None) -> None:
        if rows_total is None and time.monotonic() - self.last < settings.EXPORT_HEARTBEAT_SECONDS:
            return
        self.last = time.monotonic()
        changes = {"rows_done": rows_done, "heartbeat_at": timezone.now()}
        if rows_total is not None:
            changes["rows_total"] = rows_total
        ExportRequest.objects.filter(pk=self.export_id).update(**changes)


DOWNLOAD_SALT = "reports.download"


def download_url(tenant, export: ExportRequest, *, absolute: bool = False) -> str:
    """A URL that downloads the file without other credentials until it expires."""
    return download_url_for(tenant, export.pk, absolute=absolute)


def download_url_for(tenant, export_id, *, absolute: bool = False) -> str:
    """``download_url`` from the export's id (the email worker has no tenant schema at hand)."""
    token = signing.dumps({"t": tenant.pk, "e": str(export_id)}, salt=DOWNLOAD_SALT)
    path = f"/api/v1/exports/{export_id}/download?token={token}"
    if absolute:
        from apps.tenancy.links import tenant_url

        return tenant_url(tenant, path)
    return path


def download_token_valid(*, tenant, export_id: str, token: str) -> bool:
    try:
        claims = signing.loads(token, salt=DOWNLOAD_SALT, max_age=settings.EXPORT_DOWNLOAD_SECONDS)
    except signing.BadSignature:
        return False
    return claims == {"t": tenant.pk, "e": str(export_id)}
