"""Monthly range partitions: create ahead, retire past retention, and a
DEFAULT partition per table so that an insert never fails for a missing month.

Written here rather than taken from a library: pg_partman needs a server
extension (not available on every shard server), and the Python partition
managers (psqlextra, django-postgres-extra) bring their own database backend,
which cannot sit under django-tenants' schema-switching backend.

The partitioned tables are listed once, in settings.PARTITIONED_TABLES; each
is created by its app's migration with ``PARTITION BY RANGE (<column>)`` and
gets its first partitions (and its DEFAULT partition) from
``create_first_partitions``.

The DEFAULT partition catches rows whose month has no partition (maintenance
stopped for longer than the months made ahead, a clock far off). PostgreSQL
refuses to create a month partition while the default holds rows of that
month, so maintenance then builds the month table on its own, moves those rows
into it and attaches it, in one transaction (``_attach_draining_default``).
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


def default_partition_name(table: str) -> str:
    return f"{table}_default"


def table_of_partition(name: str) -> str:
    """The partitioned table a month partition (``[schema.]<table>_pYYYY_MM``) belongs to."""
    match = _PARTITION_NAME.match(name.rsplit(".", 1)[-1])
    return match["table"] if match else name


@dataclass
class PartitionChanges:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    defaults_created: list[str] = field(default_factory=list)
    # "<schema>.<partition>" -> rows moved (or, in a dry run, to move) out of the default.
    moved: dict[str, int] = field(default_factory=dict)
    # table -> rows left in its default partition after this run.
    default_rows: dict[str, int] = field(default_factory=dict)


def _children(cursor, schema: str, table: str) -> list[tuple[str, bool]]:
    """(partition name, is the DEFAULT partition) of a partitioned table."""
    cursor.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        [f"{q(schema)}.{q(table)}"],
    )
    return [(name, bool(is_default)) for name, is_default in cursor.fetchall()]


def existing_partitions(cursor, schema: str, table: str) -> list[str]:
    """The range (month) partitions of ``table``; the DEFAULT partition is not one."""
    return [name for name, is_default in _children(cursor, schema, table) if not is_default]


def default_partition(cursor, schema: str, table: str) -> str | None:
    return next((name for name, is_default in _children(cursor, schema, table) if is_default), None)


def _partition_key(cursor, schema: str, table: str) -> str:
    cursor.execute(
        "SELECT a.attname FROM pg_partitioned_table p "
        "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
        "WHERE p.partrelid = %s::regclass",
        [f"{q(schema)}.{q(table)}"],
    )
    return cursor.fetchone()[0]


def _columns(cursor, schema: str, table: str) -> list[str]:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        [f"{q(schema)}.{q(table)}"],
    )
    return [row[0] for row in cursor.fetchall()]


def ensure_default_partition(cursor, schema: str, table: str, *, dry_run: bool = False) -> str | None:
    """Create ``table``'s DEFAULT partition if it has none; its name if created."""
    if default_partition(cursor, schema, table) is not None:
        return None
    name = default_partition_name(table)
    if not dry_run:
        cursor.execute(f"CREATE TABLE {q(schema)}.{q(name)} PARTITION OF {q(schema)}.{q(table)} DEFAULT")
    return name


def _months_in_default(cursor, schema: str, default: str, key: str) -> dict[dt.date, int]:
    # Bounds are UTC month starts (Django's connections run with TimeZone UTC).
    cursor.execute(
        f"SELECT date_trunc('month', {q(key)} AT TIME ZONE 'UTC')::date, count(*) "
        f"FROM {q(schema)}.{q(default)} GROUP BY 1"
    )
    return {month: count for month, count in cursor.fetchall()}


def _bounds(start: dt.date) -> str:
    return f"FOR VALUES FROM ('{start.isoformat()}') TO ('{month_start(start, 1).isoformat()}')"


def _attach_draining_default(cursor, schema: str, table: str, name: str, start: dt.date, default: str) -> int:
    """Create month partition ``name``, moving in the default's rows of its month.

    Runs in the caller's transaction (one per schema, with a lock_timeout): the
    default is locked first so no new row of the month can land in it between
    the move and the attach (inserts into other partitions go on); the month
    table is made standalone, filled with the rows deleted from the default,
    then attached. ATTACH re-checks the default under that lock, so a row
    left behind fails the whole transaction rather than being lost. Used even
    when the default holds none of the month: ATTACH takes a weaker lock on
    the parent (SHARE UPDATE EXCLUSIVE) than CREATE ... PARTITION OF (ACCESS
    EXCLUSIVE), so reads and writes of the table go on meanwhile.
    """
    parent, target, source = f"{q(schema)}.{q(table)}", f"{q(schema)}.{q(name)}", f"{q(schema)}.{q(default)}"
    key = _partition_key(cursor, schema, table)
    columns = ", ".join(q(c) for c in _columns(cursor, schema, table))
    cursor.execute(f"LOCK TABLE {source} IN ACCESS EXCLUSIVE MODE")
    # Not INCLUDING IDENTITY: the parent's identity keeps numbering the rows.
    cursor.execute(f"CREATE TABLE {target} (LIKE {parent} INCLUDING DEFAULTS)")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {source} WHERE {q(key)} >= %s AND {q(key)} < %s RETURNING {columns}) "
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM moved",
        [month_start_datetime(start), month_start_datetime(start, 1)],
    )
    moved = cursor.rowcount
    cursor.execute(f"ALTER TABLE {parent} ATTACH PARTITION {target} {_bounds(start)}")
    return moved


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
    ``months_ahead`` after it, and for every month (up to that horizon and not
    past retention) that has rows waiting in the DEFAULT partition, moving
    those rows in; detach and drop month partitions wholly older than
    ``retention_months`` (None keeps everything). The DEFAULT partition is made
    if missing and is never detached or dropped."""
    changes = PartitionChanges()
    oldest_kept = month_start(today, -retention_months) if retention_months is not None else None
    horizon = month_start(today, months_ahead)
    recent = {month_start(today, offset) for offset in range(-months_back, months_ahead + 1)}
    for table in tables or tuple(settings.PARTITIONED_TABLES):
        present = _make_months(cursor, schema, table, changes, recent=recent, horizon=horizon,
                               oldest_kept=oldest_kept, dry_run=dry_run)
        if oldest_kept is not None:
            _drop_months_before(cursor, schema, table, present, oldest_kept, changes, dry_run=dry_run)
    return changes


def _make_months(cursor, schema: str, table: str, changes: PartitionChanges, *, recent: set[dt.date],
                 horizon: dt.date, oldest_kept: dt.date | None, dry_run: bool) -> set[str]:
    """The DEFAULT partition when missing, the ``recent`` months, and every
    month (up to ``horizon``, not past retention) that has rows waiting in the
    DEFAULT partition, those rows moved in. Returns the partitions there were."""
    created_default = ensure_default_partition(cursor, schema, table, dry_run=dry_run)
    if created_default:
        changes.defaults_created.append(f"{schema}.{created_default}")
    # Known to exist from here on, except in a dry run on a schema without one.
    default = default_partition(cursor, schema, table) or default_partition_name(table)
    waiting = {} if created_default else _months_in_default(
        cursor, schema, default, _partition_key(cursor, schema, table))
    wanted = recent | {m for m in waiting if m <= horizon and (oldest_kept is None or m >= oldest_kept)}
    present = set(existing_partitions(cursor, schema, table))
    for start in sorted(wanted):
        name = partition_name(table, start)
        if name in present:
            continue
        changes.created.append(f"{schema}.{name}")
        rows = waiting.pop(start, 0)
        if not dry_run:
            rows = _attach_draining_default(cursor, schema, table, name, start, default)
        if rows:
            changes.moved[f"{schema}.{name}"] = rows
    changes.default_rows[table] = sum(waiting.values())
    return present


def _drop_months_before(cursor, schema: str, table: str, present: set[str], oldest_kept: dt.date,
                        changes: PartitionChanges, *, dry_run: bool) -> None:
    """Detach and drop ``table``'s month partitions wholly older than ``oldest_kept``."""
    for name in sorted(present):
        match = _PARTITION_NAME.match(name)
        if not match or match["table"] != table:
            continue
        if dt.date(int(match["year"]), int(match["month"]), 1) < oldest_kept:
            changes.dropped.append(f"{schema}.{name}")
            if not dry_run:
                cursor.execute(f"ALTER TABLE {q(schema)}.{q(table)} DETACH PARTITION {q(schema)}.{q(name)}")
                cursor.execute(f"DROP TABLE {q(schema)}.{q(name)}")


def create_first_partitions(table: str):
    """A migration operation body: the DEFAULT partition, and last month to
    three months ahead."""

    def run(apps, schema_editor) -> None:
        connection = schema_editor.connection
        with connection.cursor() as cursor:
            maintain(cursor, connection.schema_name, today=dt.date.today(), months_ahead=3,
                     retention_months=None, tables=(table,))

    return run


def create_default_partition(table: str):
    """A migration operation body for schemas made before DEFAULT partitions."""

    def run(apps, schema_editor) -> None:
        connection = schema_editor.connection
        with connection.cursor() as cursor:
            ensure_default_partition(cursor, connection.schema_name, table)

    return run


def accepting_window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The time range the event API accepts a new row in: from the start of
    last month to a day ahead. A business rule on client timestamps: rows
    outside it would not fail (they land in the DEFAULT partition)."""
    return month_start_datetime(now.date(), -1), now + dt.timedelta(days=1)
