"""Monthly partitions of the audit log and the analytics events."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections

from apps.audit.models import AuditEntry
from apps.partitions import partitions
from apps.partitions.maintenance import maintain_all
from apps.tenancy import planes
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


def month(offset: int) -> dt.datetime:
    return dt.datetime.combine(partitions.month_start(dt.date.today(), offset), dt.time(0), tzinfo=dt.UTC)


def partition_names(tenant) -> list[str]:
    with connections[tenant.shard.alias].cursor() as cursor:
        return partitions.existing_partitions(cursor, tenant.schema_name, "audit_entry")


def test_a_new_tenant_has_partitions_from_last_month_to_three_ahead(alpha):
    names = partition_names(alpha)
    expected = [partitions.partition_name("audit_entry", partitions.month_start(dt.date.today(), k)) for k in range(-1, 4)]
    assert names == expected


def test_a_time_bounded_query_reads_only_the_matching_partition(alpha):
    with tenant_activated(alpha):
        for offset in (-1, 0, 1):
            AuditEntry.objects.create(actor_type="system", action="create", object_type="x", object_id="1",
                                      occurred_at=month(offset) + dt.timedelta(days=3))
        this_month = AuditEntry.objects.filter(occurred_at__gte=month(0), occurred_at__lt=month(1))
        plan = this_month.explain()
        assert this_month.count() == 1
    wanted = partitions.partition_name("audit_entry", month(0).date())
    assert wanted in plan
    others = [p for p in partition_names(alpha) if p != wanted]
    assert others and not [p for p in others if p in plan], plan


def test_maintenance_creates_ahead_and_drops_past_retention(alpha, beta):
    later = partitions.month_start(dt.date.today(), 6)
    result = maintain_all(planes.shard_aliases(), months_ahead=2, retention_months=3, today=later)
    assert result.failed == {}
    names = partition_names(alpha)
    assert names[0] == partitions.partition_name("audit_entry", partitions.month_start(later, -3))
    assert names[-1] == partitions.partition_name("audit_entry", partitions.month_start(later, 2))
    assert partitions.partition_name("audit_entry", partitions.month_start(dt.date.today(), 0)) not in names
    assert partition_names(beta) == names  # every tenant on every shard
    with connections[alpha.shard.alias].cursor() as cursor:  # every partitioned table
        events = partitions.existing_partitions(cursor, alpha.schema_name, "analytics_event")
    assert [n.replace("analytics_event", "audit_entry") for n in events] == names


def test_maintenance_leaves_a_frozen_tenant_for_the_next_run(alpha, beta):
    from django.utils import timezone

    from apps.tenancy.models import Tenant

    before = partition_names(alpha)
    Tenant.objects.filter(pk=alpha.pk).update(writes_frozen_until=timezone.now() + dt.timedelta(seconds=30))
    later = partitions.month_start(dt.date.today(), 6)
    result = maintain_all(planes.shard_aliases(), months_ahead=2, retention_months=3, today=later)
    assert result.failed == {} and result.skipped == [f"{alpha.shard.alias}:{alpha.schema_name}"]
    assert partition_names(alpha) == before  # no DDL in a schema that is being moved
    assert partition_names(beta) != before


def test_maintenance_command_dry_run_changes_nothing(alpha):
    before = partition_names(alpha)
    out = StringIO()
    call_command("maintain_partitions", "--dry-run", "--months-ahead", "6", stdout=out)
    assert "would create" in out.getvalue()
    assert partition_names(alpha) == before


def test_maintenance_command_rejects_negative_numbers(alpha):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="zero or more"):
        call_command("maintain_partitions", "--months-ahead", "-1", stdout=StringIO())


def test_the_scheduled_task_maintains_every_schema(alpha, beta):
    from django.conf import settings

    from apps.partitions.tasks import maintain_partitions

    assert settings.CELERY_BEAT_SCHEDULE["maintain-partitions"]["task"] == maintain_partitions.name
    assert settings.CELERY_TASK_ROUTES["partitions.*"]["queue"] == "maintenance"
    result = maintain_partitions()
    assert result["failed"] == 0 and result["schemas"] >= 3
