"""Bring every tenant schema on every shard to the current migration state,
while the platform serves traffic.

Fast when there is nothing to do: the applied migrations of all schemas on a
shard are read in one query and compared with the migrations on disk, so only
schemas that are behind pay for Django's migrate. Shards run in parallel
(one thread each, each with its own connections); a failed schema is reported
and the rest go on; a re-run picks up exactly the schemas still behind.

Live traffic: each schema migrates in one transaction with ``SET LOCAL
lock_timeout``. A DDL statement that cannot get its lock within the timeout
gives up (so requests queued behind its lock request wait at most that long,
instead of until a long transaction ends), the schema's transaction rolls
back whole, and the schema is retried with backoff, a bounded number of
times. The one transaction also makes a schema all-or-nothing: a process
killed mid-schema leaves it exactly as it was, and the next run redoes it.
Schemas whose pending migrations include an ``atomic = False`` one (CREATE
INDEX CONCURRENTLY) run migration by migration instead, each in its own
transaction, with the same timeout set on the session.

Progress (per shard: total, behind, done, failed, retries) is printed per
schema and written to a MigrationRun row in the control plane about once a
second, so other code can read it while the run goes on.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from apps.tenancy import planes, schemas
from apps.tenancy.models import MigrationRun
from apps.tenancy.schemas import tenant_schemas_by_alias

# SQLSTATEs that mean "another transaction held what we needed": retrying later helps.
LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED = "55P03", "40P01"
# Failures kept per shard on the run row (the rest are counted, and printed).
RECORDED_FAILURES = 50


@dataclass(frozen=True)
class LockPolicy:
    """How long a DDL statement may wait for its lock, and how often to try again."""

    lock_timeout: float = 2.0  # seconds; 0 waits without bound (PostgreSQL's default)
    retries: int = 8
    first_backoff: float = 0.5  # seconds, doubled per retry with jitter, capped below
    max_backoff: float = 15.0

    def backoff(self, retry: int) -> float:
        return min(self.max_backoff, self.first_backoff * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)


@dataclass
class ShardResult:
    alias: str
    total: int = 0
    behind: int = 0
    up_to_date: int = 0
    retries: int = 0
    migrated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def counters(self) -> dict:
        return {
            "total": self.total, "behind": self.behind, "up_to_date": self.up_to_date, "done": len(self.migrated),
            "failed": len(self.failed), "retries": self.retries, "seconds": round(self.seconds, 2),
            "failures": dict(list(self.failed.items())[:RECORDED_FAILURES]),
        }


@dataclass
class RunResult:
    shards: list[ShardResult]
    seconds: float
    run_id: int | None = None

    @property
    def failed(self) -> dict[str, str]:
        return {f"{r.alias}:{schema}": error for r in self.shards for schema, error in r.failed.items()}

    def totals(self) -> tuple[int, int, int]:
        return (
            sum(r.up_to_date for r in self.shards),
            sum(len(r.migrated) for r in self.shards),
            sum(len(r.failed) for r in self.shards),
        )


def lock_conflict(exc: BaseException) -> str | None:
    """``"lock timeout"`` or ``"deadlock"`` when that is anywhere in the exception's chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None)
        if state == LOCK_NOT_AVAILABLE:
            return "lock timeout"
        if state == DEADLOCK_DETECTED:
            return "deadlock"
        current = current.__cause__ or current.__context__
    return None


def _lock_key(schema: str) -> str:
    return f"tenant-migrate:{schema}"


class SchemaMigrator:
    """Django's migration executor for one shard's schemas, one after another.

    What `manage.py migrate` does per schema, less what costs a fleet dearly:
    the project state before the pending migrations is rendered once per
    distinct ledger and cloned for each schema (rendering every model took
    about 120 ms a schema), and the ledger table is not looked up through
    Django's introspection, which lists every relation on the server (about
    50 ms a lookup with 1,000 schemas, four lookups a schema, and growing with
    the fleet). The pre/post_migrate signals are not sent: their receivers
    (contenttypes, permissions) write to the control plane only, which the
    control-plane migrate has done. Not thread-safe: one per shard thread.
    """

    def __init__(self, alias: str):
        self.alias = alias
        self.states: dict[frozenset, object] = {}

    def migrate(self, schema: str, *, has_ledger: bool) -> None:
        connection = connections[self.alias]
        previous = connection.tenant
        try:
            # The ledger must be made in the tenant schema itself, not found
            # through the search path in public (as schemas.migrate_schema does).
            connection.set_schema(schema, include_public=False)
            if not has_ledger:
                MigrationRecorder(connection).ensure_schema()
            connection.set_schema(schema)
            executor = MigrationExecutor(connection)
            executor.recorder._has_table = True  # made above, or read from it moments ago
            executor.loader.check_consistent_history(connection)
            targets = executor.loader.graph.leaf_nodes()
            plan = executor.migration_plan(targets)
            if not plan:
                return
            key = frozenset(executor.loader.applied_migrations)
            if key not in self.states:
                state = executor._create_project_state(with_applied_migrations=True)
                state.apps  # noqa: B018 - render once; clones share the rendering
                self.states[key] = state
            executor.migrate(targets, plan=plan, state=self.states[key].clone())
        finally:
            connection.set_tenant(previous)


def migrate_schema_guarded(alias: str, schema: str, *, atomic: bool, policy: LockPolicy,
                           migrator: SchemaMigrator | None = None, has_ledger: bool = False) -> None:
    """One attempt at one schema, bounded by the lock timeout.

    An advisory lock per schema makes two concurrent `migrate` runs take
    turns on a schema instead of both applying the same migration.
    """
    connection = connections[alias]
    migrator = migrator or SchemaMigrator(alias)
    timeout = f"{int(policy.lock_timeout * 1000)}ms"
    if atomic:
        with transaction.atomic(using=alias):
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [timeout])
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_lock_key(schema)])
            migrator.migrate(schema, has_ledger=has_ledger)
        return
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction block: each
    # migration commits on its own (Django's executor does that when no
    # transaction is open), so the timeout is set on the session and reset.
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, false)", [timeout])
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [_lock_key(schema)])
    try:
        migrator.migrate(schema, has_ledger=has_ledger)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [_lock_key(schema)])
            cursor.execute("RESET lock_timeout")


def migrate_schema_with_retries(
    alias: str, schema: str, *, atomic: bool, policy: LockPolicy, on_retry: Callable[[int, float, Exception], None],
    migrator: SchemaMigrator | None = None, has_ledger: bool = False,
) -> int:
    """Migrate one schema, retrying lock conflicts with backoff; returns the retries used."""
    for retry in range(policy.retries + 1):
        try:
            migrate_schema_guarded(alias, schema, atomic=atomic, policy=policy, migrator=migrator,
                                   has_ledger=has_ledger)
            return retry
        except Exception as exc:
            if lock_conflict(exc) is None or retry == policy.retries:
                raise
            delay = policy.backoff(retry + 1)
            on_retry(retry + 1, delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")


class RunRecorder:
    """Keeps the MigrationRun row up to date from the shard threads' counters.

    One writer thread (this one) writes the whole counters document about
    once a second and at the end; the shard threads only touch memory. A
    control plane that cannot be written to never stops the migration.
    """

    def __init__(self, results: dict[str, ShardResult], *, interval: float = 1.0):
        self.results = results
        self.interval = interval
        self.run_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, **fields) -> None:
        if self.run_id is None:
            return
        try:
            with transaction.atomic(using="default"):
                MigrationRun.objects.filter(pk=self.run_id).update(
                    shards=json.loads(json.dumps({a: r.counters() for a, r in self.results.items()})),
                    heartbeat_at=timezone.now(), **fields,
                )
        except Exception:  # progress is best effort; the migration goes on
            pass

    def start(self) -> None:
        try:
            with transaction.atomic(using="default"):
                previous = MigrationRun.objects.filter(finished_at__isnull=True).order_by("-started_at").first()
                run = MigrationRun.objects.create(runner=f"{socket.gethostname()}:{os.getpid()}", resumed_from=previous)
            self.run_id = run.pk
        except Exception:  # e.g. `--database shard_x` before the control plane is migrated
            return
        self._thread = threading.Thread(target=self._loop, name="migration-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._write()
        finally:
            connections.close_all()

    def finish(self, failed: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._write(status=MigrationRun.Status.FAILED if failed else MigrationRun.Status.DONE,
                    finished_at=timezone.now())


def _progress_line(alias: str, result: ShardResult, index: int, started: float) -> str:
    elapsed = max(time.perf_counter() - started, 1e-6)
    rate = index / elapsed
    eta = (result.behind - index) / rate if rate else 0.0
    return f"{index}/{result.behind} | {rate:.1f} schemas/s, ETA {eta:.0f}s, {len(result.failed)} failed"


def _migrate_shard(
    alias: str, schema_names: list[str], required: set, atomic_by_key: dict, policy: LockPolicy,
    result: ShardResult, report: Callable[[str], None],
) -> ShardResult:
    started = time.perf_counter()
    result.total = len(schema_names)
    try:
        existing = schemas.existing_schemas(alias, schema_names)
        for schema in schema_names:
            if schema not in existing:
                result.failed[schema] = "the registry places this schema here, but the shard has no such schema"
        applied = schemas.applied_migrations_by_schema(alias, sorted(existing))
        pending = {s: required - applied.get(s, set()) for s in sorted(existing)}
        pending = {s: keys for s, keys in pending.items() if keys}
        result.behind = len(pending)
        result.up_to_date = len(existing) - len(pending)
        report(f"[{alias}] {len(schema_names)} schemas, {len(pending)} behind")
        loop_started = time.perf_counter()
        migrator = SchemaMigrator(alias)
        for index, (schema, keys) in enumerate(pending.items(), start=1):
            schema_started = time.perf_counter()
            retries_here = 0

            def on_retry(retry: int, delay: float, exc: Exception, schema=schema) -> None:
                nonlocal retries_here
                retries_here = retry
                result.retries += 1
                reason = "deadlock" if lock_conflict(exc) == "deadlock" else (
                    f"lock not granted within {policy.lock_timeout:g}s")
                report(f"[{alias}] {schema}: {reason}; rolled back, retry {retry}/{policy.retries} in {delay:.1f}s")

            atomic = all(atomic_by_key.get(key, True) for key in keys)
            try:
                migrate_schema_with_retries(alias, schema, atomic=atomic, policy=policy, on_retry=on_retry,
                                            migrator=migrator, has_ledger=bool(applied.get(schema)))
            except Exception as exc:  # reported per schema; the others go on
                result.failed[schema] = f"{type(exc).__name__}: {exc}".strip()
                report(f"[{alias}] {schema} FAILED: {exc} | {_progress_line(alias, result, index, loop_started)}")
            else:
                result.migrated.append(schema)
                note = f" after {retries_here} retr{'y' if retries_here == 1 else 'ies'}" if retries_here else ""
                report(f"[{alias}] {schema} migrated in {time.perf_counter() - schema_started:.2f}s{note} | "
                       f"{_progress_line(alias, result, index, loop_started)}")
    except Exception as exc:  # the shard itself is unreachable
        for schema in schema_names:
            result.failed.setdefault(schema, f"shard unavailable: {type(exc).__name__}: {exc}")
        report(f"[{alias}] FAILED: {exc}")
    finally:
        result.seconds = time.perf_counter() - started
        if threading.current_thread() is not threading.main_thread():
            connections.close_all()
    return result


def _tenant_migration_atomicity() -> dict[tuple[str, str], bool]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    labels = planes.tenant_app_labels()
    return {key: migration.atomic for key, migration in loader.disk_migrations.items() if key[0] in labels}


def migrate_tenant_schemas(
    aliases: list[str], *, only_schema: str | None = None, report: Callable[[str], None] = print,
    policy: LockPolicy | None = None, record: bool = True,
) -> RunResult:
    """Migrate the tenant schemas on ``aliases``; see the module docstring."""
    started = time.perf_counter()
    policy = policy or LockPolicy()
    by_alias = tenant_schemas_by_alias(aliases, only_schema)
    atomic_by_key = _tenant_migration_atomicity()
    required = set(atomic_by_key)
    lock = threading.Lock()
    results = {alias: ShardResult(alias=alias) for alias in by_alias}
    recorder = RunRecorder(results)
    if record:
        recorder.start()

    def locked_report(line: str) -> None:
        with lock:
            report(line)

    try:
        with ThreadPoolExecutor(max_workers=max(1, len(aliases))) as pool:
            futures = [
                pool.submit(_migrate_shard, alias, names, required, atomic_by_key, policy, results[alias],
                            locked_report)
                for alias, names in by_alias.items()
            ]
            shard_results = [future.result() for future in futures]
    finally:
        failed = any(r.failed for r in results.values())
        if record:
            recorder.finish(failed)
    return RunResult(shards=shard_results, seconds=time.perf_counter() - started, run_id=recorder.run_id)
