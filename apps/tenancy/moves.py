"""Move a tenant's schema from one shard to another without losing a row.

A move is a recorded operation (a ``Move`` row) made of phases, each a
function below and each safe to kill (see platform/runbooks/shards.md). It
takes one of two paths, chosen in prepare from the source server:

**logical** (the source runs with ``wal_level=logical``): the copy runs
while writes go on, through PostgreSQL logical replication
(``apps.tenancy.logical``), and writes freeze only for the switch.

1. ``prepare``: create and migrate the schema on the target. No freeze.
2. ``online_copy``: publication of the tenant's tables on the source,
   subscription on the target (initial copy, then every change). No freeze.
3. ``catch_up``: wait until the target is close behind, compare every key
   range while writes go on, remember the ranges in flight. No freeze.
4. ``final_switch``: freeze (a lease), drain briefly, lock the source tables
   in one statement, wait until the target confirmed the source's last WAL
   position, compare the ranges that may have changed since, carry the
   sequences over, rename the source schema away.
5. ``flip`` and ``retire`` as below; retire also drops the subscription,
   slot and publication.

**locked** (any other source):

1. ``prepare`` as above.
2. ``copy``: freeze writes (a lease, renewed by the live mover), wait
   MOVE_DRAIN_SECONDS for requests that passed the freeze check, then, in
   one source transaction, lock every source table in ONE ``LOCK TABLE``
   statement with a lock timeout (retried), stream every table with COPY into
   the target's transaction and carry identity sequences over.
3. ``verify``: row count and md5 per primary-key range, both sides, compared
   range by range (bounded memory). The target commits.
4. ``flip``: still holding the source locks, rename the source schema to
   ``retired_schema`` and commit; then point the registry at the target and
   end the freeze. A write that was waiting on a lock re-resolves its table
   name after the rename and fails loudly instead of landing in a copy
   nobody reads; so no acknowledged write is lost whatever is killed when.
5. ``retire``: drop the renamed source copy.

Killed before the source rename commits, the source is untouched: the move
is rolled back (replication objects and target copy dropped; the freeze
lapses on its own). Killed after it, the verified target is the tenant's
data: the move is finished forward. ``move_resume`` / ``move_abort``
(``move_tenant --resume/--abort``) and the periodic ``recover_stale_moves``
decide which from what is on the servers, not from what the dead mover last
wrote.

One mover per tenant: a transaction-level advisory lock on the control
database, keyed by tenant id, held on a connection of its own for the whole
move (a transaction, so it also holds through PgBouncer in transaction
pooling mode). The server releases it when the mover's connection dies.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, OperationalError, connections, transaction
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from . import logical, planes, schemas
from .models import Move, Shard, Tenant

logger = logging.getLogger(__name__)

LEDGER_TABLE = "django_migrations"
# First key of pg_try_advisory_xact_lock(int, int): moves' own namespace of
# advisory locks on the control database, the tenant id being the second.
ADVISORY_NAMESPACE = 0x6D6F7665  # "move"
# SQLSTATEs of a lock the mover could not get in time: lock_not_available,
# deadlock_detected. The mover gives way and tries again.
LOCK_CONFLICTS = {"55P03", "40P01"}


class MoveError(RuntimeError):
    pass


class MoveInProgress(MoveError):
    """Another process is moving this tenant right now."""


class MoveVerificationFailed(MoveError):
    pass


class MoveLocksUnavailable(MoveError):
    pass


Report = Callable[[str], None]


@dataclass
class TableCopy:
    table: str
    rows: int
    checksum: str


@dataclass
class MoveReport:
    tenant: str
    source: str
    target: str
    move_id: int | None = None
    outcome: str = Move.Phase.DONE
    tables: list[TableCopy] = field(default_factory=list)
    bytes_copied: int = 0
    rows_copied: int = 0
    freeze_seconds: float = 0.0
    total_seconds: float = 0.0
    lock_attempts: int = 0


# --- schema inspection -------------------------------------------------------


def _tables(alias: str, schema: str) -> list[tuple[str, str]]:
    """(table, relkind) of the schema's tables, partitions excluded, by name."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> %s "
            "ORDER BY c.relname",
            [schema, LEDGER_TABLE],
        )
        return cursor.fetchall()


def _partitions(alias: str, schema: str, table: str) -> list[tuple[str, str]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [f"{q(schema)}.{q(table)}"],
        )
        return cursor.fetchall()


def _columns(alias: str, schema: str, table: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum",
            [f"{q(schema)}.{q(table)}"],
        )
        return [row[0] for row in cursor.fetchall()]


def _integer_key(alias: str, schema: str, table: str) -> str | None:
    """The table's leading primary-key column when it is an integer."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)",
            [f"{q(schema)}.{q(table)}"],
        )
        row = cursor.fetchone()
        return row[0] if row else None


# --- verification: checksums by key range, streamed ---------------------------


_cursor_numbers = itertools.count()


def range_checksums(alias: str, schema: str, table: str, *, only: list[int] | None = None,
                    from_range: int | None = None) -> Iterator[tuple[int, int, str]]:
    """(range, rows, md5) per MOVE_VERIFY_RANGE_ROWS primary-key values, in order.

    The database aggregates one range at a time (an ordered aggregate is never
    hashed, so at most one range's row hashes are in memory there) and the
    rows come to this process in batches through a server-side cursor.
    Within a range rows are ordered by their own hash, so the physical order
    of the copy does not matter. A table without an integer key is split into
    1024 ranges by a hash of the row instead.

    ``only`` and ``from_range`` restrict an integer-keyed table to those
    ranges (and every range from ``from_range`` on), read through the primary
    key's index: what the online move compares again during its freeze.
    """
    key = _integer_key(alias, schema, table)
    size = int(settings.MOVE_VERIFY_RANGE_ROWS)
    bucket = f"(t.{q(key)} / {size})" if key else "(hashtext(t::text) & 1023)"
    where = ""
    if key and (only is not None or from_range is not None):
        parts = [f"(t.{q(key)} >= {int(r) * size} AND t.{q(key)} < {(int(r) + 1) * size})" for r in only or ()]
        if from_range is not None:
            parts.append(f"t.{q(key)} >= {int(from_range) * size}")
        where = "WHERE " + (" OR ".join(parts) or "false")
    sql = (
        f"SELECT {bucket} AS r, count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) "
        f"FROM {q(schema)}.{q(table)} t {where} GROUP BY 1 ORDER BY 1"
    )
    connection = connections[alias]
    connection.ensure_connection()
    # A named (server-side) cursor needs a transaction: the caller's, or one here.
    with transaction.atomic(using=alias), connection.connection.cursor(name=f"move_verify_{next(_cursor_numbers)}") as cursor:
        cursor.itersize = 1000
        cursor.execute(sql)
        yield from cursor


def table_fingerprint(alias: str, schema: str, table: str) -> tuple[int, str]:
    """Row count and a checksum of the whole table, from its range checksums."""
    count, digest = 0, hashlib.md5(usedforsecurity=False)
    for number, rows, checksum in range_checksums(alias, schema, table):
        count += rows
        digest.update(f"{number}:{rows}:{checksum};".encode())
    return count, digest.hexdigest() if count else ""


def _verify_table(src: str, dst: str, schema: str, table: str, **ranges) -> TableCopy:
    """Compare ``table`` range by range on both sides; its rows and checksum when equal."""
    rows, digest = 0, hashlib.md5(usedforsecurity=False)
    with closing(range_checksums(src, schema, table, **ranges)) as source, \
            closing(range_checksums(dst, schema, table, **ranges)) as target:
        while True:
            a, b = next(source, None), next(target, None)
            if a != b:
                raise MoveVerificationFailed(f"{table}: key range {(a or b)[0]} differs: source {a}, target {b}")
            if a is None:
                return TableCopy(table, rows, digest.hexdigest() if rows else "")
            rows += a[1]
            digest.update(f"{a[0]}:{a[1]}:{a[2]};".encode())


def _differing_ranges(src: str, dst: str, schema: str, table: str, **ranges) -> tuple[set[int], int]:
    """Ranges whose checksums differ between the sides, and the highest range seen.

    For comparing while writes go on: a difference is not an error here,
    only a range to compare again once the source is still.
    """
    source = {r: (n, c) for r, n, c in range_checksums(src, schema, table, **ranges)}
    target = {r: (n, c) for r, n, c in range_checksums(dst, schema, table, **ranges)}
    differing = {r for r in source.keys() | target.keys() if source.get(r) != target.get(r)}
    return differing, max(source.keys() | target.keys(), default=0)


# --- the copy ----------------------------------------------------------------


def _copy_table(source: str, target: str, schema: str, table: str, columns: list[str]) -> tuple[int, int]:
    """Stream ``table`` from source to target with binary COPY; (bytes, rows) copied."""
    column_list = ", ".join(q(c) for c in columns)
    copied = 0
    src = connections[source].cursor().cursor  # the psycopg cursor, for COPY
    dst = connections[target].cursor().cursor
    with (
        src.copy(f"COPY (SELECT {column_list} FROM {q(schema)}.{q(table)}) TO STDOUT (FORMAT BINARY)") as out,
        dst.copy(f"COPY {q(schema)}.{q(table)} ({column_list}) FROM STDIN (FORMAT BINARY)") as into,
    ):
        for chunk in out:
            into.write(chunk)
            copied += len(chunk)
    return copied, max(dst.rowcount, 0)


def _sync_identity_sequences(target: str, schema: str, table: str, columns: list[str]) -> None:
    with connections[target].cursor() as cursor:
        for column in columns:
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [f"{q(schema)}.{q(table)}", column])
            sequence = cursor.fetchone()[0]
            if sequence:
                cursor.execute(
                    f"SELECT setval(%s, coalesce((SELECT max({q(column)}) FROM {q(schema)}.{q(table)}), 0) + 1, false)",
                    [sequence],
                )


def _is_lock_conflict(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) in LOCK_CONFLICTS


def lock_source_tables(alias: str, schema: str, tables: list[str]) -> int:
    """SHARE-lock every table of ``schema`` in the open transaction; the attempts it took.

    One statement, tables in name order, so the mover never holds some tables
    while waiting for others across statements; and a lock timeout below
    PostgreSQL's deadlock_timeout, so that if a client transaction holds one
    table and wants another the mover holds, the mover gives way (its
    savepoint rolls back, releasing what it got) before the deadlock detector
    could pick the client's write as the victim. Waiting writes queue behind
    the LOCK for at most that timeout.
    """
    names = ", ".join(f"{q(schema)}.{q(t)}" for t in sorted(tables))
    attempts = settings.MOVE_LOCK_ATTEMPTS
    for attempt in range(1, attempts + 1):
        _cancel_autovacuum(alias, schema)
        try:
            with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)",
                               [f"{int(settings.MOVE_LOCK_TIMEOUT_SECONDS * 1000)}ms"])
                cursor.execute(f"LOCK TABLE {names} IN SHARE MODE")
            return attempt
        except OperationalError as exc:
            if not _is_lock_conflict(exc):
                raise
            if attempt == attempts:
                raise MoveLocksUnavailable(
                    f"could not lock {schema}'s tables in {attempts} attempts of "
                    f"{settings.MOVE_LOCK_TIMEOUT_SECONDS}s: long transactions hold them") from exc
            time.sleep(random.uniform(0.05, 0.25) * min(attempt, 8))  # let the client's transaction finish
    raise AssertionError("unreachable")


def _cancel_autovacuum(alias: str, schema: str) -> None:
    """Cancel autovacuum workers holding locks in ``schema`` (not anti-wraparound ones).

    Autovacuum's SHARE UPDATE EXCLUSIVE conflicts with the mover's SHARE
    lock, and autovacuum only yields to a lock that waited deadlock_timeout
    (1 s), longer than the mover's lock timeout: on a freshly loaded table
    every attempt would time out behind it. Cancelled, autovacuum simply runs
    again later (after the move, on whichever copy is live).
    """
    try:
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT pg_cancel_backend(a.pid) FROM pg_stat_activity a WHERE a.backend_type = 'autovacuum worker' "
                "AND a.datname = current_database() AND a.query NOT LIKE %s AND EXISTS (SELECT 1 FROM pg_locks l "
                "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE l.pid = a.pid AND n.nspname = %s)",
                ["%wraparound%", schema],
            )
    except DatabaseError:  # no right to signal it: the lock attempts wait it out as before
        logger.warning("could not cancel autovacuum on the tenant's tables", extra={"schema": schema})


# --- one mover per tenant, and its lease ---------------------------------------


class MoverLock:
    """The tenant's move lock: an advisory lock in a transaction kept open on a
    control-database connection of this process's own. Dies with the process."""

    def __init__(self, tenant_id: int):
        self.tenant_id = tenant_id
        self.connection = None
        self.lost = False
        self._use = threading.Lock()

    def acquire(self) -> bool:
        db = connections["default"]
        self.connection = db.get_new_connection(db.get_connection_params())
        self.connection.autocommit = False
        got = self.connection.execute("SELECT pg_try_advisory_xact_lock(%s, %s)",
                                      [ADVISORY_NAMESPACE, self.tenant_id]).fetchone()[0]
        if not got:
            self.release()
        return got

    def ping(self) -> None:
        """Keep the session visibly alive; remember if it is gone (the lock with it)."""
        with self._use:
            try:
                self.connection.execute("SELECT 1")
            except Exception:
                self.lost = True
                raise

    def release(self) -> None:
        with self._use:
            if self.connection is not None:
                try:
                    self.connection.close()  # ends the transaction and with it the lock
                finally:
                    self.connection = None


class Lease:
    """The mover's heartbeat: every third of MOVE_LEASE_SECONDS, record the
    heartbeat and, while freezing, push the tenant's freeze deadline ahead.

    A thread of its own (with its own database connections), so a long COPY
    or a wait on a lock does not let the freeze lapse under a live mover.
    """

    def __init__(self, move: Move, lock: MoverLock):
        self.move_id, self.tenant_id, self.lock = move.pk, move.tenant_id, lock
        self.seconds = settings.MOVE_LEASE_SECONDS
        self.freezing = False
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"move-{move.pk}-lease", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.seconds)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.seconds / 3):
                try:
                    self.beat()
                except Exception:  # the control plane blinked; the next beat tries again
                    logger.exception("move heartbeat failed", extra={"move": self.move_id})
        finally:
            connections.close_all()  # this thread's connections only

    def beat(self) -> None:
        self.lock.ping()
        with self._guard:
            Move.objects.filter(pk=self.move_id).update(heartbeat_at=timezone.now())
            if self.freezing:
                self._extend()

    def freeze(self) -> None:
        with self._guard:
            self.freezing = True
            self._extend()

    def stop_renewing(self) -> None:
        """Before the mover ends the freeze itself: no beat may renew it after."""
        with self._guard:
            self.freezing = False

    def _extend(self) -> None:
        tenant = Tenant.objects.get(pk=self.tenant_id)
        tenant.writes_frozen_until = timezone.now() + timedelta(seconds=self.seconds)
        tenant.save(update_fields=["writes_frozen_until"])  # signals drop the cached host lookups


@dataclass
class MoveRun:
    """What the phases share: the record, the servers, the lease, the report."""

    move: Move
    tenant: Tenant
    lease: Lease
    report: Report
    result: MoveReport
    frozen_at: float | None = None

    @property
    def src(self) -> str:
        return self.move.source.alias

    @property
    def dst(self) -> str:
        return self.move.target.alias

    @property
    def schema(self) -> str:
        return self.move.schema_name

    def enter(self, phase: str, **fields) -> None:
        self.move.phase = phase
        self.move.heartbeat_at = timezone.now()
        for name, value in fields.items():
            setattr(self.move, name, value)
        self.move.save(update_fields=["phase", "heartbeat_at", *fields])

    def progress(self, note: str = "") -> None:
        from .selectors import move_progress_line

        self.report(move_progress_line(self.move) + (f" ({note})" if note else ""))


def pause_point(run: MoveRun, name: str) -> None:
    """Fault drills: with MOVE_PAUSE_AT=<name> in its environment the mover
    stops here for MOVE_PAUSE_SECONDS (default 60), saying so, so that a
    drill (tests/test_online_moves.py) can kill it at a known moment of a
    phase. Named points: copy, catch_up, freeze, flip."""
    if os.environ.get("MOVE_PAUSE_AT") == name:
        run.report(f"pausing at {name} (MOVE_PAUSE_AT)")
        time.sleep(float(os.environ.get("MOVE_PAUSE_SECONDS", "60")))


def _mover_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


# --- phases --------------------------------------------------------------------


def prepare(run: MoveRun) -> None:
    run.enter(Move.Phase.PREPARE)
    if schemas.schema_exists(run.dst, run.schema):
        # Only a failed earlier move can have left it: the registry places the
        # tenant on the source, and schema names are unique per tenant.
        run.report(f"dropping leftover {run.schema} on {run.move.target.name} from an earlier attempt")
        schemas.drop_schema(run.dst, run.schema)
    run.report(f"preparing {run.schema} on {run.move.target.name}")
    schemas.create_schema(run.dst, run.schema)
    schemas.migrate_schema(run.dst, run.schema)
    online, why_not = logical.supports_online_copy(run.src)
    rows_total, bytes_total = _schema_size(run.src, run.schema)
    run.enter(Move.Phase.PREPARE, path=Move.Path.LOGICAL if online else Move.Path.LOCKED,
              rows_total=rows_total, bytes_total=bytes_total)
    run.report(f"path: {run.move.path}" + (f" ({why_not})" if why_not else " (copy online, freeze for the switch)")
               + f"; about {rows_total} rows, {bytes_total / 1e6:.1f} MB")


def _schema_size(alias: str, schema: str) -> tuple[int, int]:
    """(rows, bytes) of the schema's tables by the server's statistics: estimates, for progress."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(greatest(c.reltuples, coalesce(s.n_live_tup, 0))), 0)::bigint, "
            "coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname <> %s",
            [schema, LEDGER_TABLE],
        )
        rows, size = cursor.fetchone()
        return int(rows), int(size)


def _mirror_partitions(run: MoveRun, tables: list[tuple[str, str]]) -> None:
    """Give the target's partitioned tables the source's partitions (bounds and all)."""
    with connections[run.dst].cursor() as cursor:
        for table, relkind in tables:
            if relkind != "p":
                continue
            for partition, bound in _partitions(run.src, run.schema, table):
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {q(run.schema)}.{q(partition)} "
                    f"PARTITION OF {q(run.schema)}.{q(table)} {bound}"
                )


def freeze(run: MoveRun) -> None:
    """Start the copy phase: freeze writes, then let requests in flight finish.

    Requests that passed the freeze check just before it are still running;
    waiting for them here means the locks that follow rarely meet a client
    transaction at all (and when they do, the mover gives way, see
    ``lock_source_tables``).
    """
    run.enter(Move.Phase.COPY)
    run.lease.freeze()
    run.frozen_at = time.perf_counter()
    run.report(f"writes frozen for {run.tenant.slug} (a {run.lease.seconds:g}s lease, renewed); "
               f"draining in-flight requests for {settings.MOVE_DRAIN_SECONDS:g}s")
    time.sleep(settings.MOVE_DRAIN_SECONDS)


def copy(run: MoveRun, tables: list[tuple[str, str]]) -> None:
    """Lock the source and stream it into the target (both transactions open)."""
    run.result.lock_attempts = lock_source_tables(run.src, run.schema, [t for t, _ in tables])
    run.report(f"locked {len(tables)} source tables (attempt {run.result.lock_attempts})")
    with connections[run.dst].cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(f'{q(run.schema)}.{q(t)}' for t, _ in tables)}")
    _mirror_partitions(run, tables)
    for number, (table, _) in enumerate(tables, start=1):
        columns = _columns(run.src, run.schema, table)
        copied_bytes, copied_rows = _copy_table(run.src, run.dst, run.schema, table, columns)
        run.result.bytes_copied += copied_bytes
        run.move.rows_copied += copied_rows
        _sync_identity_sequences(run.dst, run.schema, table, columns)
        # COPY's binary stream is about the size of the heap: good enough for progress.
        Move.objects.filter(pk=run.move.pk).update(bytes_copied=run.result.bytes_copied,
                                                   rows_copied=run.move.rows_copied, heartbeat_at=timezone.now())
        run.move.bytes_copied = run.result.bytes_copied
        run.progress(f"table {number}/{len(tables)} {table}")
        if number == 1:
            pause_point(run, "copy")


def verify(run: MoveRun, tables: list[tuple[str, str]]) -> None:
    run.enter(Move.Phase.VERIFY, bytes_copied=run.result.bytes_copied)
    for table, _ in tables:
        copied = _verify_table(run.src, run.dst, run.schema, table)
        run.result.tables.append(copied)
        run.report(f"verified {table}: {copied.rows} rows, checksum {copied.checksum[:12]}")
    run.move.rows_copied = run.result.rows_copied = sum(t.rows for t in run.result.tables)


def switch_source(run: MoveRun) -> None:
    """Rename the locked source schema away; the caller's commit makes it final."""
    run.enter(Move.Phase.FLIP, rows_copied=run.move.rows_copied, bytes_copied=run.move.bytes_copied)
    with connections[run.src].cursor() as cursor:
        cursor.execute(f"ALTER SCHEMA {q(run.schema)} RENAME TO {q(run.move.retired_schema)}")


def flip(run: MoveRun) -> None:
    """Point the registry at the target and end the freeze, in one write."""
    if run.lease.lock.lost:
        # Lost the move lock: another process may be deciding this move now.
        raise MoveError("lost the move lock before the flip; recovery finishes this move")
    run.lease.stop_renewing()
    tenant = Tenant.objects.get(pk=run.tenant.pk)
    tenant.shard = run.move.target
    tenant.writes_frozen_until = None
    tenant.save(update_fields=["shard", "writes_frozen_until", "updated_at"])  # signals drop cached lookups
    run.tenant.shard, run.tenant.writes_frozen_until = tenant.shard, None
    if run.frozen_at is not None:
        run.result.freeze_seconds = time.perf_counter() - run.frozen_at
    run.enter(Move.Phase.RETIRE, freeze_seconds=run.result.freeze_seconds or None)
    run.report(f"{run.tenant.slug} now lives on {run.move.target.name}; writes open again")


def retire(run: MoveRun) -> None:
    run.enter(Move.Phase.RETIRE)
    # Replication first: a slot left behind would make the source keep WAL forever.
    logical.drop_for_move(run.src, run.dst, run.move.pk)
    schemas.drop_schema(run.src, run.move.retired_schema)
    run.report(f"dropped the old copy {run.move.retired_schema} on {run.move.source.name}")
    run.enter(Move.Phase.DONE, finished_at=timezone.now())


def roll_back(run: MoveRun, error: str) -> None:
    """Before the switch: drop the target copy, end the freeze on the source."""
    run.lease.stop_renewing()
    try:
        # The subscription before the schema it writes into; the slot with it.
        logical.drop_for_move(run.src, run.dst, run.move.pk)
    except Exception:  # a server unreachable: recovery and shard_orphans find them by name
        logger.exception("could not drop the move's replication objects")
    try:
        schemas.drop_schema(run.dst, run.schema)
    except Exception:  # target unreachable: the next attempt (or shard_orphans) drops it
        logger.exception("could not drop the partial copy on the target")
    tenant = Tenant.objects.get(pk=run.tenant.pk)
    if tenant.shard_id == run.move.source_id and tenant.writes_frozen_until is not None:
        tenant.writes_frozen_until = None
        tenant.save(update_fields=["writes_frozen_until", "updated_at"])
    run.enter(Move.Phase.ROLLED_BACK, error=error[:2000], finished_at=timezone.now())
    run.report(f"rolled back: {run.tenant.slug} stays on {run.move.source.name}, writes open")


# --- the online path: logical replication ----------------------------------------


def _online_setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def online_copy(run: MoveRun, tables: list[tuple[str, str]], names: logical.Names) -> None:
    """Publish the source's tables, subscribe the target; wait for the initial copy. No freeze."""
    run.enter(Move.Phase.COPY)
    _mirror_partitions(run, tables)
    with connections[run.dst].cursor() as cursor:
        # Migrations may have put rows in a fresh schema; the copy brings the source's.
        cursor.execute(f"TRUNCATE {', '.join(f'{q(run.schema)}.{q(t)}' for t, _ in tables)}")
    changed = logical.ensure_replica_identity(run.src, run.schema, [t for t, _ in tables])
    if changed:
        run.report(f"replica identity FULL for tables without a primary key: {', '.join(changed)}")
    logical.publish(run.src, names, run.schema, [t for t, _ in tables])
    logical.subscribe(run.dst, run.src, names)
    run.report(f"publication and subscription {names.name}: copying {len(tables)} tables while writes go on")
    pause_point(run, "copy")
    last_report = 0.0
    while True:
        states = logical.table_states(run.dst, names)
        errors = logical.subscription_errors(run.dst, names)
        if errors > 2:  # a worker that failed once is retried by the server; failing again is not luck
            raise MoveError(f"the subscription failed {errors} time(s) on {run.move.target.name}; "
                            "see that server's log")
        copied_rows, copied_bytes = _schema_size(run.dst, run.schema)
        ready = states.get("r", 0) + states.get("s", 0)
        run.move.bytes_copied = min(copied_bytes, max(run.move.bytes_total, copied_bytes))
        run.move.rows_copied = copied_rows
        run.move.lag_bytes = logical.lag_bytes(run.src, names)
        Move.objects.filter(pk=run.move.pk).update(
            bytes_copied=run.move.bytes_copied, rows_copied=run.move.rows_copied, lag_bytes=run.move.lag_bytes,
            heartbeat_at=timezone.now())
        if sum(states.values()) >= len(tables) and ready == sum(states.values()):
            break
        if time.monotonic() - last_report > 2:
            run.progress(f"{ready}/{len(tables)} tables copied")
            last_report = time.monotonic()
        time.sleep(0.2)
    run.progress(f"initial copy done, {len(tables)} tables")


def catch_up(run: MoveRun, tables: list[tuple[str, str]], names: logical.Names) -> dict[str, tuple[set[int], int]]:
    """Let the target apply what the source wrote meanwhile, then compare every
    range of every table while writes go on. Returns, per table, the ranges
    that differed (in flight, to compare again in the freeze) and the highest
    range seen (new rows land above it). No freeze."""
    run.enter(Move.Phase.CATCH_UP)
    _wait_lag_below(run, names, int(_online_setting("MOVE_CATCH_UP_BYTES", 1_000_000)))
    suspects: dict[str, tuple[set[int], int]] = {}
    for table, _ in tables:
        differing, highest = _differing_ranges(run.src, run.dst, run.schema, table)
        suspects[table] = (differing, highest)
    # Ranges that differed while rows were in flight: once more after catching up.
    _wait_lag_below(run, names, int(_online_setting("MOVE_CATCH_UP_BYTES", 1_000_000)))
    for table, (differing, highest) in suspects.items():
        if differing and _integer_key(run.src, run.schema, table):
            still, _ = _differing_ranges(run.src, run.dst, run.schema, table, only=sorted(differing))
            suspects[table] = (still, highest)
    pending = sum(len(d) for d, _ in suspects.values())
    run.report(f"compared every range while writing went on: {pending} range(s) in flight, compared again frozen")
    pause_point(run, "catch_up")
    return suspects


def _wait_lag_below(run: MoveRun, names: logical.Names, limit: int) -> None:
    last_report = 0.0
    while True:
        lag = logical.lag_bytes(run.src, names)
        run.move.lag_bytes = lag
        Move.objects.filter(pk=run.move.pk).update(lag_bytes=lag, heartbeat_at=timezone.now())
        if lag is not None and lag <= limit:
            return
        if time.monotonic() - last_report > 2:
            run.progress(f"catching up, {0 if lag is None else lag / 1e6:.1f} MB of WAL behind")
            last_report = time.monotonic()
        time.sleep(0.1)


def final_switch(run: MoveRun, tables: list[tuple[str, str]], names: logical.Names,
                 suspects: dict[str, tuple[set[int], int]], before_flip: Callable[[], None] | None) -> None:
    """The freeze: drain, lock the source, wait for the target to confirm the
    last change, compare what may have changed since the catch-up, carry the
    sequences over and rename the source away (committed by the caller's exit
    from the source transaction)."""
    run.enter(Move.Phase.FREEZE)
    run.lease.freeze()
    run.frozen_at = time.perf_counter()
    # LOCK TABLE waits for the writes in flight anyway; the drain only spares
    # requests that passed the freeze check a 503 when their statement meets
    # the renamed schema.
    time.sleep(_online_setting("MOVE_ONLINE_DRAIN_SECONDS", 0.2))
    with transaction.atomic(using=run.src):
        run.result.lock_attempts = lock_source_tables(run.src, run.schema, [t for t, _ in tables])
        lsn = logical.current_lsn(run.src)
        waited = logical.wait_confirmed(run.src, names, lsn,
                                        timeout=_online_setting("MOVE_ONLINE_CATCH_UP_TIMEOUT_SECONDS", 5))
        run.enter(Move.Phase.VERIFY, lag_bytes=0)
        for table, _ in tables:
            differing, highest = suspects.get(table, (set(), 0))
            if _integer_key(run.src, run.schema, table):
                copied = _verify_table(run.src, run.dst, run.schema, table, only=sorted(differing),
                                       from_range=highest)
            else:
                copied = _verify_table(run.src, run.dst, run.schema, table)
            run.result.tables.append(copied)
        sequences = logical.sync_sequences(run.src, run.dst, run.schema)
        # By the source's statistics (kept current by its writers; the
        # target's lag behind the apply worker): an estimate, for the record.
        rows_copied, _ = _schema_size(run.src, run.schema)
        _, bytes_copied = _schema_size(run.dst, run.schema)
        run.result.bytes_copied = bytes_copied
        run.move.rows_copied = run.result.rows_copied = rows_copied
        run.move.bytes_copied = bytes_copied
        run.report(f"frozen: caught up in {waited * 1000:.0f} ms, ranges compared, {sequences} sequences carried over")
        pause_point(run, "freeze")
        if before_flip is not None:
            before_flip()
        switch_source(run)


def run_online(run: MoveRun, before_flip: Callable[[], None] | None) -> None:
    tables = _tables(run.src, run.schema)
    names = logical.Names.for_move(run.move.pk)
    online_copy(run, tables, names)
    suspects = catch_up(run, tables, names)
    final_switch(run, tables, names, suspects, before_flip)


# --- entry points ----------------------------------------------------------------


def _validate(tenant: Tenant, target: Shard) -> None:
    source = tenant.shard
    if source is None:
        raise ValidationError({"tenant": "The platform tenant has no data to move."})
    if source.pk == target.pk:
        raise ValidationError({"shard": f"Tenant '{tenant.slug}' is already on shard '{target.name}'."})
    if target.state != Shard.State.ACTIVE:
        raise ValidationError({"shard": f"Shard '{target.name}' is {target.state} and takes no tenants."})
    if target.alias not in planes.shard_aliases():
        raise ValidationError({"shard": f"Shard '{target.name}' has no connection configured here."})
    required = schemas.required_tenant_migrations()
    applied = schemas.applied_migrations_by_schema(source.alias, [tenant.schema_name])[tenant.schema_name]
    if not required <= applied:
        raise ValidationError(
            {"tenant": f"Schema {tenant.schema_name} is behind on migrations; run `manage.py migrate` first."})


def _locked(tenant: Tenant) -> MoverLock:
    lock = MoverLock(tenant.pk)
    if not lock.acquire():
        running = Move.objects.filter(tenant=tenant, finished_at__isnull=True).first()
        where = f" (move {running.pk}, phase {running.phase}, by {running.mover})" if running else ""
        raise MoveInProgress(f"Tenant '{tenant.slug}' is being moved by another process{where}; not starting.")
    return lock


def open_move(tenant: Tenant) -> Move | None:
    return Move.objects.select_related("tenant", "source", "target").filter(
        tenant=tenant, finished_at__isnull=True).first()


def tenant_move(*, tenant: Tenant, target: Shard, report: Report = lambda line: None,
                before_flip: Callable[[], None] | None = None) -> MoveReport:
    """Move ``tenant`` to the ``target`` shard; see the module docstring.

    ``before_flip`` runs once the copy is verified and committed, before the
    switch (an operator confirmation, or a fault injected by a test). Raises
    ``MoveInProgress`` when another process moves the tenant, ``MoveError``
    when an unfinished move of it awaits ``move_resume`` or ``move_abort``.
    """
    tenant = Tenant.objects.select_related("shard").get(pk=tenant.pk)
    _validate(tenant, target)
    lock = _locked(tenant)
    try:
        move = move_record(tenant=tenant, target=target, mover=_mover_name())
        return _run_move(move, tenant, lock, report, before_flip)
    finally:
        lock.release()


def move_record(*, tenant: Tenant, target: Shard, mover: str) -> Move:
    """The Move row of a new move of ``tenant`` (phase prepare), or MoveError
    naming the unfinished one. The caller validated the move."""
    if (unfinished := open_move(tenant)) is not None:
        raise MoveError(
            f"Move {unfinished.pk} of '{tenant.slug}' ({unfinished.source.name} -> {unfinished.target.name}) "
            f"is unfinished in phase {unfinished.phase}; run `move_tenant {tenant.slug} --resume` or `--abort`.")
    try:
        move = Move.objects.create(
            tenant=tenant, source=tenant.shard, target=target, schema_name=tenant.schema_name,
            retired_schema="", mover=mover)
    except IntegrityError as exc:  # another request recorded one a moment ago
        raise MoveInProgress(f"Tenant '{tenant.slug}' has an unfinished move.") from exc
    move.retired_schema = f"{tenant.schema_name}_moved_{move.pk}"[:63]
    move.save(update_fields=["retired_schema"])
    return move


def validate_move(tenant: Tenant, target: Shard) -> None:
    """ValidationError when ``tenant`` cannot move to ``target`` (same shard, target not active, ...)."""
    _validate(Tenant.objects.select_related("shard").get(pk=tenant.pk), target)


def move_run(*, move_id: int, report: Report = lambda line: None) -> MoveReport | None:
    """Carry out a recorded move that nobody has started (``services.move_start``).

    A move already under way elsewhere raises MoveInProgress; one that was
    started and stopped (its mover died: a redelivered task) is resumed; a
    finished one is left alone (None).
    """
    move = Move.objects.select_related("tenant", "source", "target").get(pk=move_id)
    if move.finished:
        return None
    tenant = Tenant.objects.select_related("shard").get(pk=move.tenant_id)
    lock = _locked(tenant)
    try:
        move.refresh_from_db()
        if move.finished:
            return None
        if move.phase == Move.Phase.PREPARE and not move.path and tenant.shard_id == move.source_id:
            move.mover = _mover_name()
            move.save(update_fields=["mover"])
            return _run_move(move, tenant, lock, report, None)
    finally:
        lock.release()
    return move_resume(move=move, report=report)


def _run_move(move: Move, tenant: Tenant, lock: MoverLock, report: Report,
              before_flip: Callable[[], None] | None) -> MoveReport:
    result = MoveReport(tenant=tenant.slug, source=move.source.name, target=move.target.name, move_id=move.pk)
    started = time.perf_counter()
    with Lease(move, lock) as lease:
        run = MoveRun(move=move, tenant=tenant, lease=lease, report=report, result=result)
        switched = False
        try:
            prepare(run)
            if run.move.path == Move.Path.LOGICAL:
                run_online(run, before_flip)
            else:
                freeze(run)
                with transaction.atomic(using=run.src):
                    tables = _tables(run.src, run.schema)
                    with transaction.atomic(using=run.dst):
                        copy(run, tables)
                        verify(run, tables)
                    # The target copy is committed and verified.
                    if before_flip is not None:
                        before_flip()
                    switch_source(run)
            switched = True  # the source rename is committed: from here on, only forward
            flip(run)
            pause_point(run, "flip")
        except BaseException as exc:
            if not switched:
                logger.warning("tenant move failed before the switch; rolling back",
                               extra={"tenant_slug": tenant.slug, "move": move.pk})
                try:
                    roll_back(run, f"{type(exc).__name__}: {exc}")
                except Exception:  # the record stays open; recovery rolls it back
                    logger.exception("rolling back the move failed")
            else:
                logger.exception("tenant move failed after the switch; recovery finishes it",
                                 extra={"tenant_slug": tenant.slug, "move": move.pk})
                Move.objects.filter(pk=move.pk).update(error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        try:
            retire(run)
        except Exception as exc:
            Move.objects.filter(pk=move.pk).update(error=f"retire: {type(exc).__name__}: {exc}"[:2000])
            raise
    result.total_seconds = time.perf_counter() - started
    Move.objects.filter(pk=move.pk).update(total_seconds=result.total_seconds)
    logger.info("tenant moved", extra={
        "tenant_slug": tenant.slug, "source": result.source, "target": result.target, "move": move.pk,
        "freeze_seconds": round(result.freeze_seconds, 3), "bytes": result.bytes_copied,
        "lock_attempts": result.lock_attempts})
    return result


def _switched(move: Move) -> bool:
    """Whether the source rename committed: the verified target is the tenant's data.

    Read from the servers, not from the record: the record's phase is
    written before the rename commits, so it may say more than happened.
    """
    tenant = Tenant.objects.get(pk=move.tenant_id)
    if tenant.shard_id == move.target_id:
        return True
    if schemas.schema_exists(move.source.alias, move.schema_name):
        return False
    if move.phase in (Move.Phase.FLIP, Move.Phase.RETIRE) and schemas.schema_exists(move.target.alias,
                                                                                        move.schema_name):
        return True
    raise MoveError(f"Move {move.pk}: {move.schema_name} is neither on {move.source.name} nor switched to "
                    f"{move.target.name}; an operator must look (tenant_location, shard_orphans).")


def _settle(move: Move, *, abort: bool, report: Report) -> MoveReport:
    """Finish ``move`` (switched) or roll it back (not switched), holding its lock.

    With ``abort``, a switched move is refused: its target is the tenant's data.
    """
    tenant = Tenant.objects.select_related("shard").get(pk=move.tenant_id)
    lock = _locked(tenant)
    try:
        move = Move.objects.select_related("source", "target").get(pk=move.pk)
        if move.finished:
            raise MoveError(f"Move {move.pk} already finished ({move.phase}).")
        move.mover = _mover_name()
        move.save(update_fields=["mover"])
        result = MoveReport(tenant=tenant.slug, source=move.source.name, target=move.target.name, move_id=move.pk)
        with Lease(move, lock) as lease:
            run = MoveRun(move=move, tenant=tenant, lease=lease, report=report, result=result)
            if not _switched(move):
                roll_back(run, move.error or f"rolled back from phase {move.phase}: its mover stopped")
                result.outcome = Move.Phase.ROLLED_BACK
                return result
            if abort:
                raise MoveError(f"Move {move.pk} already switched {tenant.slug} to {move.target.name}; "
                                "it can only be finished (--resume).")
            if tenant.shard_id != move.target_id:
                flip(run)
            retire(run)
            return result
    finally:
        lock.release()


def move_resume(*, move: Move, report: Report = lambda line: None) -> MoveReport:
    """Continue a recorded move whose mover stopped.

    After the switch it is finished (flip, retire). Before it the source is
    untouched: the partial copy is rolled back and the move runs again to the
    same target.
    """
    result = _settle(move, abort=False, report=report)
    if result.outcome != Move.Phase.ROLLED_BACK:
        return result
    report(f"move {move.pk} stopped before its switch; copying again")
    tenant = Tenant.objects.select_related("shard").get(pk=move.tenant_id)
    return tenant_move(tenant=tenant, target=move.target, report=report)


def move_abort(*, move: Move, report: Report = lambda line: None) -> MoveReport:
    """Roll back a recorded move that has not switched yet."""
    return _settle(move, abort=True, report=report)


def recover_stale_moves(*, report: Report = lambda line: None) -> dict[str, int]:
    """Settle every open move whose mover stopped heartbeating.

    Before its switch a move is rolled back (the tenant is back to normal at
    once; no copy runs from here); after it, finished. A move whose lock is
    still held has a live mover, only slow to heartbeat: left alone.
    """
    stale_before = timezone.now() - timedelta(seconds=2 * settings.MOVE_LEASE_SECONDS)
    counts = {"rolled_back": 0, "finished": 0, "busy": 0, "failed": 0, "replication_dropped": 0}
    for move in Move.objects.select_related("source", "target").filter(
            finished_at__isnull=True, heartbeat_at__lt=stale_before):
        try:
            outcome = _settle(move, abort=False, report=report).outcome
            counts["finished" if outcome == Move.Phase.DONE else "rolled_back"] += 1
        except MoveInProgress:
            counts["busy"] += 1
        except Exception:
            logger.exception("could not settle a stale move", extra={"move": move.pk})
            counts["failed"] += 1
    counts["replication_dropped"] = _drop_replication_orphans(report)
    return counts


def _drop_replication_orphans(report: Report) -> int:
    """Slots, publications and subscriptions of moves that are over: they hold WAL, drop them now."""
    from .orphans import replication_orphans_drop

    try:
        return len(replication_orphans_drop(report=report))
    except Exception:  # a shard down: the next run tries again
        logger.exception("could not drop the replication objects of finished moves")
        return 0


def rebalance_run(*, max_moves: int, report: Report = lambda line: None) -> list[MoveReport]:
    """Carry out up to ``max_moves`` moves of the rebalance plan, one at a time.

    The plan is worked out afresh from the registry on every run, so a run
    that stopped (a failure, an interrupt, ``max_moves``) is resumed by
    running again. Stops at the first failed move (the exception propagates).
    A tenant with an unfinished move is skipped: settle that move first.
    """
    from .selectors import rebalance_plan

    plan = rebalance_plan()[:max_moves]
    done: list[MoveReport] = []
    for number, (slug, source, target) in enumerate(plan, start=1):
        tenant = Tenant.objects.select_related("shard").get(slug=slug)
        if tenant.shard is None or tenant.shard.name != source:
            report(f"[{number}/{len(plan)}] {slug}: no longer on {source}, skipped")
            continue
        if open_move(tenant) is not None:
            report(f"[{number}/{len(plan)}] {slug}: has an unfinished move (move_tenant {slug} --resume), skipped")
            continue
        report(f"[{number}/{len(plan)}] moving {slug} from {source} to {target}")
        result = tenant_move(tenant=tenant, target=Shard.objects.get(name=target))
        report(f"[{number}/{len(plan)}] {slug} on {target}: {result.rows_copied} rows, "
               f"writes frozen {result.freeze_seconds:.2f}s")
        done.append(result)
    return done


# --- commands and a frozen tenant ----------------------------------------------


class TenantFrozen(MoveError):
    """The tenant does not accept writes now (a move's freeze, or a read-only shard)."""


def tenant_writable(tenant: Tenant, *, wait_seconds: float = 0.0, poll_seconds: float = 0.5,
                    report: Report = lambda line: None) -> Tenant:
    """``tenant`` fresh from the registry once it accepts writes.

    For commands that write into a tenant's schema: a frozen tenant is being
    switched to another shard, and a write now would meet a locked or
    renamed schema. Waits up to ``wait_seconds`` (0: not at all), then
    raises TenantFrozen with a message for the operator. A freeze is a
    lease, so the wait ends at the lease's deadline at the latest.
    """
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        fresh = Tenant.objects.select_related("shard").get(pk=tenant.pk)
        if fresh.accepts_writes:
            return fresh
        if fresh.writes_frozen:
            why = f"its writes are frozen until {fresh.writes_frozen_until:%H:%M:%S} UTC by a move (renewed while it runs)"
        else:
            why = f"its shard {fresh.shard.name} is read-only"
        if time.monotonic() >= deadline:
            hint = "" if wait_seconds else " Try again later, or pass --wait SECONDS."
            raise TenantFrozen(f"Tenant '{fresh.slug}' does not accept writes now: {why}; nothing was written.{hint}")
        if not said:
            report(f"{fresh.slug}: {why}; waiting up to {wait_seconds:g}s")
            said = True
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
