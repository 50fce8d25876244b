"""Draining a DEFAULT partition: how long maintenance holds it while it moves
a month of rows into that month's new partition.

    bin/dev bench partitions [ROWS]    (default 200000; re-runnable)
"""

import datetime as dt
import sys
import time

from django.db import connections, transaction
from django_tenants.utils import quote_schema_name as q

from apps.partitions import partitions
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create

MONTHS_AHEAD = 8  # beyond what a new schema has: rows there land in the default


def main(rows: int) -> None:
    public_tenant_ensure()
    shard_register_configured()
    tenant = Tenant.objects.filter(slug="bench-partitions").first() or tenant_create(
        slug="bench-partitions", name="Bench partitions", admin_email="bench@bench.test").tenant
    alias, schema = tenant.shard.alias, tenant.schema_name
    month = partitions.month_start(dt.date.today(), MONTHS_AHEAD)
    name = partitions.partition_name("audit_entry", month)
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {q(schema)}.{q(name)}")  # a re-run starts from the default again
        cursor.execute(
            f"INSERT INTO {q(schema)}.audit_entry (occurred_at, actor_type, action, object_type, object_id) "
            "SELECT %s::timestamptz + (g %% 86400) * interval '1 second', 'system', 'create', 'bench', g::text "
            "FROM generate_series(1, %s) g",
            [partitions.month_start_datetime(month), rows],
        )
    for label, changes_wanted in (("with rows waiting", True), ("nothing waiting (next run)", False)):
        started = time.perf_counter()
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            changes = partitions.maintain(cursor, schema, today=dt.date.today(), months_ahead=MONTHS_AHEAD,
                                          retention_months=None)
        seconds = time.perf_counter() - started
        moved = sum(changes.moved.values())
        print(f"maintenance {label}: {seconds * 1000:.0f} ms, {moved} row(s) moved, "
              f"{len(changes.created)} partition(s) created")
        assert bool(moved) == changes_wanted


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
