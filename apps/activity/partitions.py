"""Monthly range partitions: create ahead, retire past retention.

Written here rather than taken from a library: pg_partman needs a server
extension (not available on every shard server), and the Python partition
managers (psqlextra, django-postgres-extra) bring their own database backend,
which cannot sit under django-tenants' schema-switching backend.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from django_tenants.utils import quote_schema_name as q

PARTITIONED_TABLES = ("activity_event",)
_PARTITION_NAME = re.compile(r"^(?P<table>.+)_p(?P<year>\d{4})_(?P<month>\d{2})$")


def month_start(day: dt.date, offset: int = 0) -> dt.date:
    index = day.year * 12 + (day.month - 1) + offset
    return dt.date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: dt.date) -> str:
    return f"{table}_p{month:%Y_%m}"


@dataclass
class PartitionChanges:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def existing_partitions(cursor, schema: str, table: str) -> list[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        [f"{q(schema)}.{q(table)}"],
    )
    return [row[0] for row in cursor.fetchall()]


def maintain(
    cursor,
    schema: str,
    *,
    today: dt.date,
    months_ahead: int,
    retention_months: int | None,
    months_back: int = 1,
    dry_run: bool = False,
) -> PartitionChanges:
    """Make partitions from ``months_back`` before ``today``'s month to
    ``months_ahead`` after it; detach and drop those wholly older than
    ``retention_months`` (None keeps everything)."""
    changes = PartitionChanges()
    for table in PARTITIONED_TABLES:
        present = set(existing_partitions(cursor, schema, table))
        for offset in range(-months_back, months_ahead + 1):
            start = month_start(today, offset)
            name = partition_name(table, start)
            if name in present:
                continue
            changes.created.append(f"{schema}.{name}")
            if not dry_run:
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {q(schema)}.{q(name)} PARTITION OF {q(schema)}.{q(table)} "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{month_start(start, 1).isoformat()}')"
                )
        if retention_months is None:
            continue
        oldest_kept = month_start(today, -retention_months)
        for name in sorted(present):
            match = _PARTITION_NAME.match(name)
            if not match or match["table"] != table:
                continue
            if dt.date(int(match["year"]), int(match["month"]), 1) < oldest_kept:
                changes.dropped.append(f"{schema}.{name}")
                if not dry_run:
                    cursor.execute(f"ALTER TABLE {q(schema)}.{q(table)} DETACH PARTITION {q(schema)}.{q(name)}")
                    cursor.execute(f"DROP TABLE {q(schema)}.{q(name)}")
    return changes
