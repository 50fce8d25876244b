"""Move a tenant's schema from one shard to another without losing a row.

A move is a recorded operation (a ``Move`` row) made of phases, each a
function (``phases``, ``copying``, ``online``) and each safe to kill (see
platform/runbooks/shards.md). It takes one of two paths, chosen in prepare
from the source server:

**logical** (the source runs with ``wal_level=logical``): the copy runs
while writes go on, through PostgreSQL logical replication
(``apps.fleet.logical``), and writes freeze only for the switch.

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

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.tenancy import planes, schemas
from apps.tenancy.models import Move, Shard, Tenant
from apps.tenancy.placement import rebalance_plan

from .copying import run_locked
from .locks import Lease, MoverLock, acquire_mover_lock
from .online import run_online
from .orphans import replication_orphans_drop
from .phases import MoveRun, flip, pause_point, prepare, retire, roll_back
from .records import MoveError, MoveInProgress, MoveReport, Report, move_record, mover_name, open_move

logger = logging.getLogger(__name__)

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
    lock = acquire_mover_lock(tenant)
    try:
        move = move_record(tenant=tenant, target=target, mover=mover_name())
        return _run_move(move, tenant, lock, report, before_flip)
    finally:
        lock.release()


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
    lock = acquire_mover_lock(tenant)
    try:
        move.refresh_from_db()
        if move.finished:
            return None
        if move.phase == Move.Phase.PREPARE and not move.path and tenant.shard_id == move.source_id:
            move.mover = mover_name()
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
                run_locked(run, before_flip)
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
    lock = acquire_mover_lock(tenant)
    try:
        move = Move.objects.select_related("source", "target").get(pk=move.pk)
        if move.finished:
            raise MoveError(f"Move {move.pk} already finished ({move.phase}).")
        move.mover = mover_name()
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

