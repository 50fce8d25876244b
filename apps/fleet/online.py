"""The online path of a move: logical replication while writes go on, a freeze only for the switch."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from apps.tenancy.models import Move

from . import catalog, logical
from .locks import lock_source_tables
from .phases import MoveRun, mirror_partitions, pause_point, switch_source
from .records import MoveError
from .verification import differing_ranges, verify_table


def _online_setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def online_copy(run: MoveRun, tables: list[tuple[str, str]], names: logical.Names) -> None:
    """Publish the source's tables, subscribe the target; wait for the initial copy. No freeze."""
    run.enter(Move.Phase.COPY)
    mirror_partitions(run, tables)
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
        copied_rows, copied_bytes = catalog.schema_size(run.dst, run.schema)
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
        differing, highest = differing_ranges(run.src, run.dst, run.schema, table)
        suspects[table] = (differing, highest)
    # Ranges that differed while rows were in flight: once more after catching up.
    _wait_lag_below(run, names, int(_online_setting("MOVE_CATCH_UP_BYTES", 1_000_000)))
    for table, (differing, highest) in suspects.items():
        if differing and catalog.integer_key(run.src, run.schema, table):
            still, _ = differing_ranges(run.src, run.dst, run.schema, table, only=sorted(differing))
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
            if catalog.integer_key(run.src, run.schema, table):
                copied = verify_table(run.src, run.dst, run.schema, table, only=sorted(differing),
                                       from_range=highest)
            else:
                copied = verify_table(run.src, run.dst, run.schema, table)
            run.result.tables.append(copied)
        sequences = logical.sync_sequences(run.src, run.dst, run.schema)
        # By the source's statistics (kept current by its writers; the
        # target's lag behind the apply worker): an estimate, for the record.
        rows_copied, _ = catalog.schema_size(run.src, run.schema)
        _, bytes_copied = catalog.schema_size(run.dst, run.schema)
        run.result.bytes_copied = bytes_copied
        run.move.rows_copied = run.result.rows_copied = rows_copied
        run.move.bytes_copied = bytes_copied
        run.report(f"frozen: caught up in {waited * 1000:.0f} ms, ranges compared, {sequences} sequences carried over")
        pause_point(run, "freeze")
        if before_flip is not None:
            before_flip()
        switch_source(run)


def run_online(run: MoveRun, before_flip: Callable[[], None] | None) -> None:
    tables = catalog.tables(run.src, run.schema)
    names = logical.Names.for_move(run.move.pk)
    online_copy(run, tables, names)
    suspects = catch_up(run, tables, names)
    final_switch(run, tables, names, suspects, before_flip)

