"""How whole-tenant exports and offboardings stand, for the API, the tenant admin and the console."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from .models import Offboarding, TenantExport

# No progress for this long: the export's worker probably died; the broker
# hands the task to another worker, which goes on from the checkpoint.
STALL_SECONDS = 120


def export_percent(export: TenantExport) -> int | None:
    if export.status == TenantExport.Status.DONE:
        return 100
    if not export.parts_total:
        return None
    return min(99, round(100 * export.parts_done / export.parts_total))


def export_stalled(export: TenantExport, *, now: dt.datetime | None = None) -> bool:
    if export.status != TenantExport.Status.RUNNING:
        return False
    last = export.heartbeat_at or export.created_at
    seconds = max(STALL_SECONDS, 4 * settings.TENANT_EXPORT_HEARTBEAT_SECONDS)
    return last < (now or timezone.now()) - dt.timedelta(seconds=seconds)


def exports_in_progress():
    """Every tenant's unfinished exports, oldest first (the operator console)."""
    return (TenantExport.objects.select_related("tenant")
            .filter(status__in=[TenantExport.Status.PENDING, TenantExport.Status.RUNNING]).order_by("created_at"))


def offboardings(*, open_only: bool = False):
    found = Offboarding.objects.all()
    return found.filter(status__in=Offboarding.OPEN) if open_only else found


def offboarding_of(tenant_id: int) -> Offboarding | None:
    return Offboarding.objects.filter(tenant_id=tenant_id).order_by("-requested_at").first()


def export_list(*, tenant_id: int):
    return TenantExport.objects.filter(tenant_id=tenant_id).order_by("-created_at")
