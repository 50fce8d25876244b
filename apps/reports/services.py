"""Export requests. The export job itself runs in a worker (exports queue)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

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
    with transaction.atomic(using=tenant_write_alias()):
        export = ExportRequest.objects.create(kind=kind, format=format, filters=filters, requested_by_id=requested_by_id)
        audit_record(action="create", object_type="export", object_id=export.pk,
                     changes={"kind": [None, kind], "format": [None, format]})
    return export
