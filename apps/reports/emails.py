"""The links of the export emails, made by the worker that sends them.

The messages name the export only (the signed download link would stay in
the tenant's outbox for days and reach the broker and the dead letters);
these are registered with the notifications app in ReportsConfig.ready().
"""

from __future__ import annotations

from apps.tenancy.links import tenant_url
from apps.tenancy.models import Tenant


def _tenant(tenant_id):
    from apps.jobs.errors import PermanentError

    tenant = Tenant.objects.filter(pk=tenant_id).first() if tenant_id else None
    if tenant is None:
        raise PermanentError(f"no tenant {tenant_id!r} for an export email")
    return tenant


def report_ready_links(refs: dict, tenant_id) -> dict:
    """The signed download link, signed now: valid EXPORT_DOWNLOAD_SECONDS from sending."""
    from .services import download_url_for

    return {"url": download_url_for(_tenant(tenant_id), refs["export_id"], absolute=True)}


def export_failed_links(refs: dict, tenant_id) -> dict:
    """The tenant admin's exports page (asks for a sign-in; no secret)."""
    return {"url": tenant_url(_tenant(tenant_id), "/admin/exports/")}
