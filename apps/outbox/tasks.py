"""Beat's upkeep of the outboxes (the sweep of unsent rows, the purge of sent
ones), fanned out over tenants in bounded batches."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import shared_task
from django.conf import settings

from apps.jobs.base import PlatformTask
from apps.jobs.services import control_outbox_purge, control_outbox_sweep
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant

from .services import tenant_outbox_purge, tenant_outbox_sweep

logger = logging.getLogger(__name__)


def tenant_id_batches(batch_size: int):
    ids = list(Tenant.objects.exclude(shard=None).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), batch_size):
        yield ids[start:start + batch_size]


def _fan_out(task) -> int:
    """One message per batch of OUTBOX_SWEEP_BATCH tenants, not one per tenant."""
    batches = 0
    for batch in tenant_id_batches(settings.OUTBOX_SWEEP_BATCH):
        task.apply_async(args=[batch])
        batches += 1
    return batches


def _each_tenant(tenant_ids: list[int], service: Callable[[], int], what: str) -> int:
    """Run ``service`` with each tenant active in turn; returns the sum."""
    total = 0
    for tenant in Tenant.objects.select_related("shard").filter(pk__in=tenant_ids).exclude(shard=None):
        try:
            with tenant_activated(tenant):
                total += service()
        except Exception:  # one shard down must not stop the others
            logger.exception(f"outbox {what} failed for a tenant", extra={"tenant_slug": tenant.slug})
    return total


@shared_task(base=PlatformTask, name="outbox.sweep")
def sweep() -> dict:
    """Every few seconds: the control outbox here, tenants in batches."""
    sent = control_outbox_sweep()
    return {"control_sent": sent, "tenant_batches": _fan_out(sweep_tenants)}


@shared_task(base=PlatformTask, name="outbox.sweep_tenants")
def sweep_tenants(tenant_ids: list[int]) -> int:
    return _each_tenant(tenant_ids, tenant_outbox_sweep, "sweep")


@shared_task(base=PlatformTask, name="outbox.purge")
def purge() -> dict:
    """Hourly: sent rows past OUTBOX_RETENTION_SECONDS, control outbox here, tenants in batches."""
    deleted = control_outbox_purge()
    return {"control_deleted": deleted, "tenant_batches": _fan_out(purge_tenants)}


@shared_task(base=PlatformTask, name="outbox.purge_tenants")
def purge_tenants(tenant_ids: list[int]) -> int:
    return _each_tenant(tenant_ids, tenant_outbox_purge, "purge")
