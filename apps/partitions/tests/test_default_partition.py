"""DEFAULT partitions: an insert never fails for a month without a partition,
and maintenance moves such rows into their month once it makes it."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from apps.analytics.models import Event
from apps.audit.models import AuditEntry
from apps.partitions import partitions
from apps.partitions.maintenance import maintain_all
from apps.tenancy import planes
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


def month(offset: int) -> dt.datetime:
    return partitions.month_start_datetime(dt.date.today(), offset)


def partition_holding(tenant, table: str, row_id: int) -> str:
    with connections[tenant.shard.alias].cursor() as cursor:
        cursor.execute(f'SELECT tableoid::regclass::text FROM "{tenant.schema_name}"."{table}" WHERE id = %s',
                       [row_id])
        return cursor.fetchone()[0].rsplit(".", 1)[-1]


def default_count(tenant, table: str) -> int:
    with connections[tenant.shard.alias].cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{tenant.schema_name}"."{partitions.default_partition_name(table)}"')
        return cursor.fetchone()[0]


def audit(occurred_at: dt.datetime) -> AuditEntry:
    return AuditEntry.objects.create(actor_type="system", action="create", object_type="x", object_id="1",
                                     occurred_at=occurred_at)


def test_every_partitioned_table_of_a_new_tenant_has_a_default_partition(alpha, beta):
    for tenant in (alpha, beta):
        with connections[tenant.shard.alias].cursor() as cursor:
            for table in ("audit_entry", "analytics_event"):
                assert partitions.default_partition(cursor, tenant.schema_name, table) == f"{table}_default"


def test_rows_past_the_horizon_land_in_the_default_and_maintenance_moves_them_to_their_month(alpha, gamma):
    far_ahead, long_ago = month(8) + dt.timedelta(days=3), month(-6) + dt.timedelta(days=10)
    with tenant_activated(alpha):
        future = audit(far_ahead)  # no partition for that month: before DEFAULT this raised
        past = audit(long_ago)
        event = Event.objects.create(occurred_at=far_ahead, event_type="signup", received_at=timezone.now())
    with tenant_activated(gamma):
        audit(far_ahead)
    assert partition_holding(alpha, "audit_entry", future.pk) == "audit_entry_default"
    assert partition_holding(alpha, "analytics_event", event.pk) == "analytics_event_default"
    assert default_count(alpha, "audit_entry") == 2

    out = StringIO()
    result = maintain_all(planes.shard_aliases(), months_ahead=8, retention_months=13, report=out.write)

    assert result.failed == {}
    assert result.moved_rows == 4  # alpha: two audit rows, one event; gamma: one audit row
    assert result.default_rows == 0
    assert partition_holding(alpha, "audit_entry", future.pk) == partitions.partition_name("audit_entry", far_ahead)
    assert partition_holding(alpha, "audit_entry", past.pk) == partitions.partition_name("audit_entry", long_ago)
    assert partition_holding(alpha, "analytics_event", event.pk) == partitions.partition_name(
        "analytics_event", far_ahead)
    assert default_count(alpha, "audit_entry") == default_count(alpha, "analytics_event") == 0
    assert default_count(gamma, "audit_entry") == 0
    assert "moved 2 row(s) from the default" not in out.getvalue()  # one month each
    assert f"{alpha.schema_name}.{partitions.partition_name('audit_entry', far_ahead)} (moved 1 row(s)" in \
        out.getvalue()
    with tenant_activated(alpha):  # the rows read back whole, through the parent
        assert AuditEntry.objects.filter(occurred_at__gte=month(8), occurred_at__lt=month(9)).get().pk == future.pk
        assert Event.objects.get(pk=event.pk).event_type == "signup"
        later = audit(far_ahead + dt.timedelta(days=1))  # new rows of that month go to its partition now
    assert partition_holding(alpha, "audit_entry", later.pk) == partitions.partition_name("audit_entry", far_ahead)


def test_rows_beyond_the_months_made_ahead_stay_in_the_default_and_are_reported(alpha):
    with tenant_activated(alpha):
        row = audit(month(30))
    out = StringIO()
    call_command("maintain_partitions", "--months-ahead", "3", stdout=out)
    assert partition_holding(alpha, "audit_entry", row.pk) == "audit_entry_default"
    assert "1 left there" in out.getvalue() and f"{alpha.schema_name}.audit_entry: 1 row(s) stay" in out.getvalue()


def test_dry_run_reports_the_move_and_moves_nothing(alpha):
    with tenant_activated(alpha):
        row = audit(month(6))
    out = StringIO()
    call_command("maintain_partitions", "--dry-run", "--months-ahead", "6", stdout=out)
    assert "would move 1 row(s) from the default" in out.getvalue()
    assert partition_holding(alpha, "audit_entry", row.pk) == "audit_entry_default"


def test_retention_never_detaches_the_default_partition(alpha):
    with tenant_activated(alpha):
        audit(month(-30))  # older than retention: kept in the default, not dropped with it
    result = maintain_all(planes.shard_aliases(), months_ahead=2, retention_months=3,
                          today=partitions.month_start(dt.date.today(), 6))
    assert result.failed == {} and result.dropped > 0
    with connections[alpha.shard.alias].cursor() as cursor:
        assert partitions.default_partition(cursor, alpha.schema_name, "audit_entry") == "audit_entry_default"
    assert default_count(alpha, "audit_entry") == 1


def test_maintenance_gives_an_existing_schema_its_missing_default_partition(alpha):
    with connections[alpha.shard.alias].cursor() as cursor:
        cursor.execute(f'DROP TABLE "{alpha.schema_name}".audit_entry_default')
    result = maintain_all(planes.shard_aliases(), months_ahead=3, retention_months=None)
    assert result.failed == {} and result.defaults_created == 1
    with tenant_activated(alpha):
        row = audit(month(12))
    assert partition_holding(alpha, "audit_entry", row.pk) == "audit_entry_default"


def test_a_locked_default_fails_that_schema_within_the_lock_timeout_and_the_rest_go_on(alpha, gamma, settings):
    """A reader holding the default partition (a long report, say) must not
    queue every writer of the table behind maintenance's DDL."""
    settings.PARTITION_LOCK_TIMEOUT_SECONDS = 0.3
    params = connections[alpha.shard.alias].get_connection_params()
    holder = psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=False)
    try:
        holder.execute(f'LOCK TABLE "{alpha.schema_name}".audit_entry_default IN ACCESS SHARE MODE')
        result = maintain_all(planes.shard_aliases(), months_ahead=5, retention_months=None)
        # Maintenance came back while the reader still held its lock (released
        # only below): it gave up on that schema at the lock timeout instead of
        # waiting for the holder, or ending its session.
        with connections[alpha.shard.alias].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                           "JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE l.pid = %s AND l.granted AND n.nspname = %s AND c.relname = 'audit_entry_default'",
                           [holder.info.backend_pid, alpha.schema_name])
            still_held = cursor.fetchone()[0]
    finally:
        holder.rollback()
        holder.close()
    assert still_held == 1
    assert list(result.failed) == [f"{alpha.shard.alias}:{alpha.schema_name}"]
    assert "lock timeout" in result.failed[f"{alpha.shard.alias}:{alpha.schema_name}"]
    with connections[gamma.shard.alias].cursor() as cursor:
        assert partitions.partition_name("audit_entry", partitions.month_start(dt.date.today(), 5)) in \
            partitions.existing_partitions(cursor, gamma.schema_name, "audit_entry")
