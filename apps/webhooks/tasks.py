"""Webhook tasks: a tenant's delivery run, recording control-plane events,
and beat's sweep and purge. Thin: the work is in delivery, recording and services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from apps.jobs.base import PlatformTask, TenantTask
from apps.outbox.tasks import tenant_id_batches
from apps.tenancy.activation import tenant_activated
from apps.tenancy.context import require_active_tenant
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)


@shared_task(base=TenantTask, name="webhooks.deliver", ignore_result=True)
def deliver() -> bool:
    """Run the tenant's due deliveries for WEBHOOKS_RUN_SECONDS; when more are
    due, queue the next run behind every other tenant's (round robin)."""
    from . import delivery, wakeups

    tenant = require_active_tenant()
    wakeups.started(tenant.pk)
    more = delivery.run()
    if more:
        wakeups.wake(tenant.pk, tenant.slug)
    return more


class RecordTask(TenantTask):
    abstract = True

    def check_arguments(self, args, kwargs) -> None:
        from .catalogue import CATALOGUE

        if args or (kwargs or {}).get("event_type") not in CATALOGUE:
            raise ValueError(f"{self.name} takes event_type (from the catalogue), items and sequence")


@shared_task(bind=True, base=RecordTask, name="webhooks.record", ignore_result=True)
def record(self, *, event_type: str, items: list[dict], sequence: int) -> int:
    """Write a control-plane change's events into the tenant's schema (once
    per message: the ids derive from the outbox row's id, the task id)."""
    from . import wakeups
    from .recording import record_relayed_events

    wanted = record_relayed_events(event_type, items, sequence, source=str(self.request.id))
    if wanted:
        tenant = require_active_tenant()
        wakeups.wake(tenant.pk, tenant.slug)
    return wanted


def _tenants(tenant_ids: list[int]):
    return Tenant.objects.select_related("shard").filter(pk__in=tenant_ids).exclude(shard=None)


@shared_task(base=PlatformTask, name="webhooks.sweep", ignore_result=True)
def sweep() -> int:
    """Beat: wake each tenant with a delivery due (retries, lost wake-ups), in batches of tenants."""
    batches = 0
    for batch in tenant_id_batches(settings.OUTBOX_SWEEP_BATCH):
        sweep_tenants.apply_async(args=[batch])
        batches += 1
    return batches


@shared_task(base=PlatformTask, name="webhooks.sweep_tenants", ignore_result=True)
def sweep_tenants(tenant_ids: list[int]) -> int:
    from .services import wake_if_due

    woken = 0
    for tenant in _tenants(tenant_ids):
        try:
            with tenant_activated(tenant):
                woken += wake_if_due()
        except Exception:  # one shard down must not stop the others
            logger.exception("webhook sweep failed for a tenant", extra={"tenant_slug": tenant.slug})
    return woken


@shared_task(base=PlatformTask, name="webhooks.purge", ignore_result=True)
def purge() -> int:
    """Hourly: events past WEBHOOKS_EVENT_RETENTION_SECONDS, fanned out in batches of tenants."""
    batches = 0
    for batch in tenant_id_batches(settings.OUTBOX_SWEEP_BATCH):
        purge_tenants.apply_async(args=[batch])
        batches += 1
    return batches


@shared_task(base=PlatformTask, name="webhooks.purge_tenants", ignore_result=True)
def purge_tenants(tenant_ids: list[int]) -> int:
    from .services import events_purge

    deleted = 0
    for tenant in _tenants(tenant_ids):
        try:
            with tenant_activated(tenant):
                deleted += events_purge()
        except Exception:  # one shard down must not stop the others
            logger.exception("webhook purge failed for a tenant", extra={"tenant_slug": tenant.slug})
    return deleted
