"""Monthly range partitions: create ahead, retire past retention.

Written here rather than taken from a library: pg_partman needs a server
extension (not available on every shard server), and the Python partition
managers (psqlextra, django-postgres-extra) bring their own database backend,
which cannot sit under django-tenants' schema-switching backend.

The partitioned tables are listed once, in settings.PARTITIONED_TABLES; each
is created by its app's migration with ``PARTITION BY RANGE (<column>)`` and
gets its first partitions from ``create_first_partitions``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from django.conf import settings
from django_tenants.utils import quote_schema_name as q

_PARTITION_NAME = re.compile(r"^(?P<table>.+)_p(?P<year>\d{4})_(?P<month>\d{2})$")


def month_start(day: dt.date, offset: int = 0) -> dt.date:
    index = day.year * 12 + (day.month - 1) + offset
    return dt.date(index // 12, index % 12 + 1, 1)


def month_start_datetime(day: dt.date, offset: int = 0) -> dt.datetime:
    return dt.datetime.combine(month_start(day, offset), dt.time(0), tzinfo=dt.UTC)


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
    tables: tuple[str, ...] | None = None,
) -> PartitionChanges:
    """Make partitions from ``months_back`` before ``today``'s month to
    ``months_ahead`` after it; detach and drop those wholly older than
    ``retention_months`` (None keeps everything)."""
    changes = PartitionChanges()
    for table in tables or tuple(settings.PARTITIONED_TABLES):
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


def create_first_partitions(table: str):
    """A migration operation body: last month to three months ahead."""

    def run(apps, schema_editor) -> None:
        connection = schema_editor.connection
        with connection.cursor() as cursor:
            maintain(cursor, connection.schema_name, today=dt.date.today(), months_ahead=3,
                     retention_months=None, tables=(table,))

    return run


def accepting_window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The time range a new partitioned row may fall in: from the start of last
    month (the oldest partition a new schema has) to a day ahead."""
    return month_start_datetime(now.date(), -1), now + dt.timedelta(days=1)
