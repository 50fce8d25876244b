"""Asking for a whole-tenant export, and offboarding a tenant (or undoing it)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.tenancy.models import Tenant
from apps.tenancy.services import tenant_set_status

from .models import Offboarding, TenantExport

DOWNLOAD_SALT = "lifecycle.download"


def export_request(*, tenant: Tenant, requested_by_id: int | None, enqueue: bool = True) -> TenantExport:
    """Record an export and queue it (control outbox, same transaction: the
    message carries the export's id only)."""
    if tenant.is_public or tenant.shard is None:
        raise ValidationError({"tenant": "The platform's own tenant has no data to export."})
    from apps.jobs.services import control_outbox_enqueue

    from .tasks import export_tenant

    with transaction.atomic(using="default"):
        export = TenantExport.objects.create(tenant=tenant, requested_by_id=requested_by_id)
        if enqueue:
            control_outbox_enqueue(export_tenant, args=[str(export.pk)])
    return export


def export_list(*, tenant: Tenant):
    return TenantExport.objects.filter(tenant=tenant).order_by("-created_at")


def download_url(tenant: Tenant, export: TenantExport) -> str:
    """A link that downloads the archive without other credentials until it expires."""
    token = signing.dumps({"t": tenant.pk, "x": str(export.pk)}, salt=DOWNLOAD_SALT)
    return f"/api/v1/tenant-exports/{export.pk}/download?token={token}"


def download_token_valid(*, tenant: Tenant, export_id: str, token: str) -> bool:
    try:
        claims = signing.loads(token, salt=DOWNLOAD_SALT, max_age=settings.TENANT_EXPORT_DOWNLOAD_SECONDS)
    except signing.BadSignature:
        return False
    return claims == {"t": tenant.pk, "x": str(export_id)}


# --- offboarding -------------------------------------------------------------


def grace_period() -> dt.timedelta:
    return dt.timedelta(days=settings.TENANT_OFFBOARDING_GRACE_DAYS)


def open_offboarding(tenant_id: int) -> Offboarding | None:
    return Offboarding.objects.filter(tenant_id=tenant_id, status__in=Offboarding.OPEN).first()


def offboard_request(*, tenant: Tenant, requested_as: str, requested_by_id: int | None = None,
                     requested_by: str = "", reason: str = "", now: bool = False) -> Offboarding:
    """Delete ``tenant``: suspended at once, erased by beat after the grace
    period (``now``: at the next run of the erasure). An operator or a
    command must give a reason; an owner may."""
    if tenant.is_public or tenant.shard is None:
        raise ValidationError({"tenant": "The platform's own tenant cannot be offboarded."})
    if requested_as != "owner" and not reason.strip():
        raise ValidationError({"reason": "Say why this tenant is deleted."})
    with transaction.atomic(using="default"):
        tenant = Tenant.objects.select_for_update(of=("self",)).select_related("shard").get(pk=tenant.pk)
        if open_offboarding(tenant.pk) is not None:
            raise ValidationError({"tenant": f"Tenant '{tenant.slug}' is already being deleted."})
        offboarding = Offboarding.objects.create(
            tenant_id=tenant.pk, tenant_slug=tenant.slug, schema_name=tenant.schema_name,
            shard_name=tenant.shard.name, requested_as=requested_as, requested_by_id=requested_by_id,
            requested_by=requested_by[:254], reason=reason.strip(), previous_status=tenant.status,
            erase_after=timezone.now() if now else timezone.now() + grace_period())
        tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)
    return offboarding


def offboard_undo(*, tenant: Tenant, cancelled_by: str) -> Offboarding:
    """Take a tenant back within its grace period: the status it had before."""
    with transaction.atomic(using="default"):
        offboarding = Offboarding.objects.select_for_update().filter(
            tenant_id=tenant.pk, status__in=Offboarding.OPEN).first()
        if offboarding is None:
            raise ValidationError({"tenant": f"Tenant '{tenant.slug}' is not being deleted."})
        if offboarding.status == Offboarding.Status.ERASING:
            raise ValidationError({"tenant": f"Tenant '{tenant.slug}' is being erased now; it cannot be undone."})
        offboarding.status = Offboarding.Status.CANCELLED
        offboarding.cancelled_at = timezone.now()
        offboarding.cancelled_by = cancelled_by[:254]
        offboarding.save(update_fields=["status", "cancelled_at", "cancelled_by"])
        tenant_set_status(tenant=tenant, status=offboarding.previous_status)
    return offboarding
