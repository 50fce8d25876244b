"""The locked path of a move: freeze, lock the source, stream it over, verify."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from apps.tenancy.models import Move

from . import catalog
from .locks import lock_source_tables
from .phases import MoveRun, mirror_partitions, pause_point, switch_source
from .verification import verify_table


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
    mirror_partitions(run, tables)
    for number, (table, _) in enumerate(tables, start=1):
        columns = catalog.columns(run.src, run.schema, table)
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
        copied = verify_table(run.src, run.dst, run.schema, table)
        run.result.tables.append(copied)
        run.report(f"verified {table}: {copied.rows} rows, checksum {copied.checksum[:12]}")
    run.move.rows_copied = run.result.rows_copied = sum(t.rows for t in run.result.tables)


def run_locked(run: MoveRun, before_flip: Callable[[], None] | None) -> None:
    freeze(run)
    with transaction.atomic(using=run.src):
        tables = catalog.tables(run.src, run.schema)
        with transaction.atomic(using=run.dst):
            copy(run, tables)
            verify(run, tables)
        # The target copy is committed and verified.
        if before_flip is not None:
            before_flip()
        switch_source(run)
