"""The tenant outbox: sent rows purged after the retention, tenant by tenant."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from apps.outbox.models import TenantOutboxMessage
from apps.outbox.tasks import purge, purge_tenants
from apps.tenancy.activation import tenant_activated


def rows(tenant, *, sent_hours_ago=None, count=1):
    sent_at = None if sent_hours_ago is None else timezone.now() - dt.timedelta(hours=sent_hours_ago)
    with tenant_activated(tenant):
        return [TenantOutboxMessage.objects.create(task_name="search.index_documents", sent_at=sent_at).pk
                for _ in range(count)]


def remaining(tenant) -> set:
    with tenant_activated(tenant):
        return set(TenantOutboxMessage.objects.values_list("pk", flat=True))


def test_a_tenants_purge_drops_its_old_sent_rows_only(alpha, beta, settings):
    settings.OUTBOX_RETENTION_SECONDS = 3600
    settings.OUTBOX_PURGE_BATCH = 2
    old = rows(alpha, sent_hours_ago=3, count=5)
    kept = rows(alpha, sent_hours_ago=0) + rows(alpha)  # recently sent, never sent
    others = rows(beta, sent_hours_ago=3, count=2)  # another tenant, not in this batch

    assert purge_tenants.apply(args=[[alpha.pk]]).get() == 5
    assert remaining(alpha) & set(old) == set() and set(kept) <= remaining(alpha)
    assert set(others) <= remaining(beta)


def test_the_purge_fans_out_over_every_tenant_in_batches(tenants, db, settings):
    from apps.jobs.tests.test_tasks import take
    from apps.tenancy.models import Tenant

    settings.OUTBOX_SWEEP_BATCH = 2
    tenant_ids = sorted(Tenant.objects.exclude(shard=None).values_list("pk", flat=True))
    result = purge.apply().get()
    assert result["tenant_batches"] == -(-len(tenant_ids) // 2)
    messages = [take("maintenance") for _ in range(result["tenant_batches"])]
    assert {m.headers["task"] for m in messages} == {"outbox.purge_tenants"}
    assert sorted(sum((m.payload[0][0] for m in messages), [])) == tenant_ids
