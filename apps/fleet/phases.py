"""The phases both paths of a move share, and what they share: the run."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from django.db import connections
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from apps.tenancy import schemas
from apps.tenancy.models import Move, Tenant

from . import catalog, logical
from .locks import Lease
from .records import MoveError, MoveReport, Report
from .selectors import move_progress_line

logger = logging.getLogger(__name__)


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
        self.report(move_progress_line(self.move) + (f" ({note})" if note else ""))


def pause_point(run: MoveRun, name: str) -> None:
    """Fault drills: with MOVE_PAUSE_AT=<name> in its environment the mover
    stops here for MOVE_PAUSE_SECONDS (default 60), saying so, so that a
    drill (tests/test_online_moves.py) can kill it at a known moment of a
    phase. Named points: copy, catch_up, freeze, flip."""
    if os.environ.get("MOVE_PAUSE_AT") == name:
        run.report(f"pausing at {name} (MOVE_PAUSE_AT)")
        time.sleep(float(os.environ.get("MOVE_PAUSE_SECONDS", "60")))


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
    rows_total, bytes_total = catalog.schema_size(run.src, run.schema)
    run.enter(Move.Phase.PREPARE, path=Move.Path.LOGICAL if online else Move.Path.LOCKED,
              rows_total=rows_total, bytes_total=bytes_total)
    run.report(f"path: {run.move.path}" + (f" ({why_not})" if why_not else " (copy online, freeze for the switch)")
               + f"; about {rows_total} rows, {bytes_total / 1e6:.1f} MB")


def mirror_partitions(run: MoveRun, tables: list[tuple[str, str]]) -> None:
    """Give the target's partitioned tables the source's partitions (bounds and all)."""
    with connections[run.dst].cursor() as cursor:
        for table, relkind in tables:
            if relkind != "p":
                continue
            for partition, bound in catalog.partitions(run.src, run.schema, table):
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {q(run.schema)}.{q(partition)} "
                    f"PARTITION OF {q(run.schema)}.{q(table)} {bound}"
                )


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

