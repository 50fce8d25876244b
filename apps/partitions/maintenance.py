"""Partition maintenance over every tenant schema on every shard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections, transaction
from prometheus_client import Counter, Gauge

from apps.tenancy.schemas import tenant_schemas_by_alias

from . import partitions

# Rows in a DEFAULT partition mean maintenance fell behind (or a client sent a
# far-off timestamp): a leading indicator before month partitions are missing.
default_rows_gauge = Gauge(
    "saas_partition_default_rows", "Rows left in DEFAULT partitions after the last maintenance run, all schemas",
    ["table"], multiprocess_mode="mostrecent",
)
moved_rows_counter = Counter(
    "saas_partition_default_rows_moved_total", "Rows moved out of DEFAULT partitions into new month partitions",
    ["table"],
)


@dataclass
class MaintenanceResult:
    schemas: int = 0
    created: int = 0
    dropped: int = 0
    defaults_created: int = 0
    moved_rows: int = 0  # out of DEFAULT partitions into their month's new partition
    default_rows: int = 0  # still in DEFAULT partitions afterwards (past the horizon or retention)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # tenants moving or frozen: left for the next run


def _moving_schemas() -> set[str]:
    from django.utils import timezone

    from apps.tenancy.models import Move, Tenant

    moving = set(Move.objects.filter(finished_at__isnull=True).values_list("schema_name", flat=True))
    frozen = Tenant.objects.filter(writes_frozen_until__gt=timezone.now()).values_list("schema_name", flat=True)
    return moving | set(frozen)


def maintain_all(
    aliases: list[str],
    *,
    months_ahead: int,
    retention_months: int | None,
    today: dt.date | None = None,
    dry_run: bool = False,
    report: Callable[[str], None] = lambda line: None,
) -> MaintenanceResult:
    result = MaintenanceResult()
    today = today or dt.date.today()
    left_per_table: dict[str, int] = dict.fromkeys(settings.PARTITIONED_TABLES, 0)
    lock_timeout_ms = int(settings.PARTITION_LOCK_TIMEOUT_SECONDS * 1000)
    busy = _moving_schemas()
    for alias, schemas in tenant_schemas_by_alias(aliases).items():
        for schema in schemas:
            result.schemas += 1
            if schema in busy:
                # DDL in a schema that is being copied elsewhere would not reach
                # the copy (logical replication carries rows, not DDL); the
                # next run, after the move, makes the partitions.
                result.skipped.append(f"{alias}:{schema}")
                report(f"[{alias}] {schema} skipped: the tenant is moving or its writes are frozen")
                continue
            try:
                with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                    # DDL on a busy table waits behind its readers and every
                    # writer queues behind the DDL: give up instead, retry next run.
                    cursor.execute(f"SET LOCAL lock_timeout = {lock_timeout_ms}")
                    changes = partitions.maintain(
                        cursor, schema, today=today, months_ahead=months_ahead,
                        retention_months=retention_months, dry_run=dry_run,
                    )
            except Exception as exc:  # one schema's failure is reported; the rest go on
                result.failed[f"{alias}:{schema}"] = f"{type(exc).__name__}: {exc}"
                report(f"[{alias}] {schema} FAILED: {exc}")
                continue
            result.created += len(changes.created)
            result.dropped += len(changes.dropped)
            result.defaults_created += len(changes.defaults_created)
            for name in changes.defaults_created:
                report(f"[{alias}] {'would create' if dry_run else 'created'} default partition {name}")
            for name in changes.created:
                moved = changes.moved.get(name)
                suffix = f" ({'would move' if dry_run else 'moved'} {moved} row(s) from the default)" if moved else ""
                report(f"[{alias}] {'would create' if dry_run else 'created'} {name}{suffix}")
            for name, moved in changes.moved.items():
                result.moved_rows += moved
                if not dry_run:
                    moved_rows_counter.labels(table=partitions.table_of_partition(name)).inc(moved)
            for name in changes.dropped:
                report(f"[{alias}] {'would drop' if dry_run else 'detached and dropped'} {name}")
            for table, rows in changes.default_rows.items():
                result.default_rows += rows
                left_per_table[table] = left_per_table.get(table, 0) + rows
                if rows:
                    report(f"[{alias}] {schema}.{table}: {rows} row(s) stay in the default partition "
                           "(beyond the months made ahead, or past retention)")
    if not dry_run:
        for table, rows in left_per_table.items():
            default_rows_gauge.labels(table=table).set(rows)
    return result
