"""Beat's sweep of the outboxes, fanned out over tenants in bounded batches."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from apps.jobs.base import PlatformTask
from apps.jobs.services import control_outbox_sweep
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant

from .services import tenant_outbox_sweep

logger = logging.getLogger(__name__)


def tenant_id_batches(batch_size: int):
    ids = list(Tenant.objects.exclude(shard=None).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), batch_size):
        yield ids[start:start + batch_size]


@shared_task(base=PlatformTask, name="outbox.sweep")
def sweep() -> dict:
    """Every few seconds: the control outbox here, tenants in batches (one
    message per batch of OUTBOX_SWEEP_BATCH tenants, not one per tenant)."""
    sent = control_outbox_sweep()
    batches = 0
    for batch in tenant_id_batches(settings.OUTBOX_SWEEP_BATCH):
        sweep_tenants.apply_async(args=[batch])
        batches += 1
    return {"control_sent": sent, "tenant_batches": batches}


@shared_task(base=PlatformTask, name="outbox.sweep_tenants")
def sweep_tenants(tenant_ids: list[int]) -> int:
    sent = 0
    for tenant in Tenant.objects.select_related("shard").filter(pk__in=tenant_ids).exclude(shard=None):
        try:
            with tenant_activated(tenant):
                sent += tenant_outbox_sweep()
        except Exception:  # one shard down must not stop the others' sweep
            logger.exception("outbox sweep failed for a tenant", extra={"tenant_slug": tenant.slug})
    return sent
