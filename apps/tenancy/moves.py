"""Move a tenant's schema from one shard to another without losing a row.

A move is a recorded operation (a ``Move`` row) made of phases, each a
function below and each safe to kill (see platform/runbooks/shards.md):

1. ``prepare``: create and migrate the schema on the target. No freeze.
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
is rolled back (target copy dropped; the freeze lapses on its own). Killed
after it, the verified target is the tenant's data: the move is finished
forward. ``move_resume`` / ``move_abort`` (``move_tenant --resume/--abort``)
and the periodic ``recover_stale_moves`` decide which from what is on the
servers, not from what the dead mover last wrote.

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
from django.db import IntegrityError, OperationalError, connections, transaction
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from . import planes, schemas
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


def range_checksums(alias: str, schema: str, table: str) -> Iterator[tuple[int, int, str]]:
    """(range, rows, md5) per MOVE_VERIFY_RANGE_ROWS primary-key values, in order.

    The database aggregates one range at a time (an ordered aggregate is never
    hashed, so at most one range's row hashes are in memory there) and the
    rows come to this process in batches through a server-side cursor.
    Within a range rows are ordered by their own hash, so the physical order
    of the copy does not matter. A table without an integer key is split into
    1024 ranges by a hash of the row instead.
    """
    key = _integer_key(alias, schema, table)
    bucket = f"(t.{q(key)} / {int(settings.MOVE_VERIFY_RANGE_ROWS)})" if key else "(hashtext(t::text) & 1023)"
    sql = (
        f"SELECT {bucket} AS r, count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) "
        f"FROM {q(schema)}.{q(table)} t GROUP BY 1 ORDER BY 1"
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


def _verify_table(src: str, dst: str, schema: str, table: str) -> TableCopy:
    """Compare ``table`` range by range on both sides; its rows and checksum when equal."""
    rows, digest = 0, hashlib.md5(usedforsecurity=False)
    with closing(range_checksums(src, schema, table)) as source, \
            closing(range_checksums(dst, schema, table)) as target:
        while True:
            a, b = next(source, None), next(target, None)
            if a != b:
                raise MoveVerificationFailed(f"{table}: key range {(a or b)[0]} differs: source {a}, target {b}")
            if a is None:
                return TableCopy(table, rows, digest.hexdigest() if rows else "")
            rows += a[1]
            digest.update(f"{a[0]}:{a[1]}:{a[2]};".encode())


# --- the copy ----------------------------------------------------------------


def _copy_table(source: str, target: str, schema: str, table: str, columns: list[str]) -> int:
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
    return copied


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
    for table, relkind in tables:
        if relkind == "p":
            with connections[run.dst].cursor() as cursor:
                for partition, bound in _partitions(run.src, run.schema, table):
                    cursor.execute(
                        f"CREATE TABLE IF NOT EXISTS {q(run.schema)}.{q(partition)} "
                        f"PARTITION OF {q(run.schema)}.{q(table)} {bound}"
                    )
        columns = _columns(run.src, run.schema, table)
        run.result.bytes_copied += _copy_table(run.src, run.dst, run.schema, table, columns)
        _sync_identity_sequences(run.dst, run.schema, table, columns)
    run.move.bytes_copied = run.result.bytes_copied


def verify(run: MoveRun, tables: list[tuple[str, str]]) -> None:
    run.enter(Move.Phase.VERIFY, bytes_copied=run.result.bytes_copied)
    for table, _ in tables:
        copied = _verify_table(run.src, run.dst, run.schema, table)
        run.result.tables.append(copied)
        run.report(f"verified {table}: {copied.rows} rows, checksum {copied.checksum[:12]}")
    run.move.rows_copied = sum(t.rows for t in run.result.tables)


def switch_source(run: MoveRun) -> None:
    """Rename the locked source schema away; the caller's commit makes it final."""
    run.enter(Move.Phase.FLIP, rows_copied=run.move.rows_copied)
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
    schemas.drop_schema(run.src, run.move.retired_schema)
    run.report(f"dropped the old copy {run.move.retired_schema} on {run.move.source.name}")
    run.enter(Move.Phase.DONE, finished_at=timezone.now())


def roll_back(run: MoveRun, error: str) -> None:
    """Before the switch: drop the target copy, end the freeze on the source."""
    run.lease.stop_renewing()
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
        if (unfinished := open_move(tenant)) is not None:
            raise MoveError(
                f"Move {unfinished.pk} of '{tenant.slug}' ({unfinished.source.name} -> {unfinished.target.name}) "
                f"stopped in phase {unfinished.phase}; run `move_tenant {tenant.slug} --resume` or `--abort`.")
        try:
            move = Move.objects.create(
                tenant=tenant, source=tenant.shard, target=target, schema_name=tenant.schema_name,
                retired_schema="", mover=_mover_name())
        except IntegrityError as exc:  # only without the lock, i.e. never; say so plainly anyway
            raise MoveInProgress(f"Tenant '{tenant.slug}' has an unfinished move.") from exc
        move.retired_schema = f"{tenant.schema_name}_moved_{move.pk}"[:63]
        move.save(update_fields=["retired_schema"])
        return _run_move(move, tenant, lock, report, before_flip)
    finally:
        lock.release()


def _run_move(move: Move, tenant: Tenant, lock: MoverLock, report: Report,
              before_flip: Callable[[], None] | None) -> MoveReport:
    result = MoveReport(tenant=tenant.slug, source=move.source.name, target=move.target.name, move_id=move.pk)
    started = time.perf_counter()
    with Lease(move, lock) as lease:
        run = MoveRun(move=move, tenant=tenant, lease=lease, report=report, result=result)
        switched = False
        try:
            prepare(run)
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
    counts = {"rolled_back": 0, "finished": 0, "busy": 0, "failed": 0}
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
    return counts


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
        report(f"[{number}/{len(plan)}] {slug} on {target}: {sum(t.rows for t in result.tables)} rows, "
               f"writes frozen {result.freeze_seconds:.2f}s")
        done.append(result)
    return done
