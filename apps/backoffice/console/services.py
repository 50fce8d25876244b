"""What an operator does from the console, each step recorded.

Every action runs the platform's existing service (tenancy, search,
reports, accounts, jobs) and writes an OperatorAction with who, when, why
and what came of it. Where the change is a database write, the record is
written in the same transaction; where it sends a message (a replay, a move
start), the record follows the send, so that no broker call is made inside a
transaction. A refused or failed action is recorded too, with its error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.audit.services import audit_record
from apps.fleet.records import MoveError
from apps.jobs.models import DeadLetter
from apps.observability.context import Actor, actor_var
from apps.tenancy.models import Shard, Tenant

from ..models import OperatorAction

logger = logging.getLogger(__name__)

Kind = OperatorAction.Kind
MAX_BULK = 500


class ConsoleError(Exception):
    """An action the console refused or could not do; the message is for the operator."""


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc) or type(exc).__name__


def clean_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise ConsoleError("Say why (a reason of a few words is required; it is kept with the action).")
    return reason[:2000]


def _record(*, kind: str, actor, reason: str, target: str, tenant_id: int | None = None, shard_name: str = "",
            detail: dict | None = None, error: str = "") -> OperatorAction:
    return OperatorAction.objects.create(
        kind=kind, actor=actor if getattr(actor, "pk", None) else None, actor_email=getattr(actor, "email", str(actor)),
        reason=reason, target=target, tenant_id=tenant_id, shard_name=shard_name, detail=detail or {},
        outcome=OperatorAction.Outcome.FAILED if error else OperatorAction.Outcome.DONE, error=error[:5000],
    )


def _perform(*, kind: str, actor, reason: str, target: str, do: Callable[[], dict | None], tenant_id: int | None = None,
             shard_name: str = "", atomic: bool = True) -> OperatorAction:
    """Run ``do`` and record it; a failure is recorded (outside the failed
    transaction) and raised as ConsoleError."""
    reason = clean_reason(reason)
    fields = {"kind": kind, "actor": actor, "reason": reason, "target": target, "tenant_id": tenant_id,
              "shard_name": shard_name}
    try:
        if atomic:
            with transaction.atomic():
                return _record(**fields, detail=do() or {})
        detail = do() or {}
    except Exception as exc:
        if not isinstance(exc, ValidationError | ConsoleError | MoveError):  # refusals, not faults
            logger.exception("operator action failed", extra={"kind": kind, "target": target})
        _record(**fields, error=_message(exc))
        raise ConsoleError(_message(exc)) from exc
    return _record(**fields, detail=detail)


# --- tenants ---------------------------------------------------------------------


@contextmanager
def _as_operator(actor) -> Iterator[None]:
    """The tenant's audit rows written in the block name ``actor`` as a
    platform operator, not as one of the tenant's users."""
    token = actor_var.set(Actor(type="operator", user_id=getattr(actor, "pk", None)))
    try:
        yield
    finally:
        actor_var.reset(token)


def _refuse_public(tenant: Tenant) -> None:
    if tenant.is_public:
        raise ConsoleError("The platform's own tenant is not operated from the console.")


def _tenant_status_change(*, tenant: Tenant, status: str, kind: str, actor, reason: str) -> OperatorAction:
    from apps.tenancy.services import tenant_set_status

    _refuse_public(tenant)
    before = tenant.status

    def do():
        if before == status:
            raise ConsoleError(f"Tenant {tenant.slug} is {status} already.")
        tenant_set_status(tenant=tenant, status=status)
        return {"status": [before, status]}

    return _perform(kind=kind, actor=actor, reason=reason, target=f"tenant {tenant.slug}", tenant_id=tenant.pk, do=do)


def tenant_suspend(*, tenant: Tenant, actor, reason: str) -> OperatorAction:
    """Suspend: the tenant's hosts refuse every request until it is resumed."""
    return _tenant_status_change(tenant=tenant, status=Tenant.Status.SUSPENDED, kind=Kind.TENANT_SUSPEND,
                                 actor=actor, reason=reason)


def tenant_resume(*, tenant: Tenant, actor, reason: str) -> OperatorAction:
    return _tenant_status_change(tenant=tenant, status=Tenant.Status.ACTIVE, kind=Kind.TENANT_RESUME,
                                 actor=actor, reason=reason)


def _start_move(*, tenant: Tenant, target: Shard, actor, reason: str) -> int:
    """One move through the fleet service (a Move row and a ``tenancy.run_move`` task)."""
    from apps.fleet.services import move_start

    if tenant.shard_id == target.pk:
        raise ConsoleError(f"Tenant {tenant.slug} is on shard {target.name} already.")
    move = move_start(tenant=tenant, target=target, actor=getattr(actor, "email", str(actor)), reason=reason)
    return move.pk


def tenant_move(*, tenant: Tenant, target: Shard, actor, reason: str) -> OperatorAction:
    """Move the tenant's schema to ``target`` in the background; the action
    lists the move, whose progress the console follows."""
    _refuse_public(tenant)
    reason = clean_reason(reason)
    source = tenant.shard.name if tenant.shard else None
    return _perform(kind=Kind.TENANT_MOVE, actor=actor, reason=reason, target=f"tenant {tenant.slug}",
                    tenant_id=tenant.pk, shard_name=source or "", atomic=False,
                    do=lambda: {"moves": [_start_move(tenant=tenant, target=target, actor=actor, reason=reason)],
                                "from": source, "to": target.name})


def tenant_reindex(*, tenant: Tenant, actor, reason: str) -> OperatorAction:
    """Rebuild the tenant's search index from scratch in the search workers
    (a message in the tenant's outbox, sent once the outbox commits)."""
    from apps.outbox.services import tenant_outbox_enqueue
    from apps.search.tasks import rebuild_index
    from apps.tenancy.activation import tenant_activated
    from apps.tenancy.routers import tenant_write_alias

    _refuse_public(tenant)

    def do():
        with tenant_activated(tenant), transaction.atomic(using=tenant_write_alias(tenant)), _as_operator(actor):
            message = tenant_outbox_enqueue(rebuild_index, kwargs={"restart": True})
            audit_record(action="update", object_type="search_index", object_id=tenant.pk,
                         changes={"rebuild": "asked for from the operator console", "reason": reason})
        return {"task": "search.rebuild_index", "message": str(message.pk)}

    return _perform(kind=Kind.TENANT_REINDEX, actor=actor, reason=reason, target=f"tenant {tenant.slug}",
                    tenant_id=tenant.pk, do=do)


def tenant_export(*, tenant: Tenant, actor, reason: str, kind: str = "documents", format: str = "csv") -> OperatorAction:
    """Export the tenant's data (reports' export, run by the export workers)."""
    from apps.reports.services import export_request
    from apps.tenancy.activation import tenant_activated

    _refuse_public(tenant)

    def do():
        # The export's own audit row names the operator as one: this reads
        # all of the tenant's data (support grants and the operator admin
        # are recorded the same way, by apps.accounts).
        with tenant_activated(tenant), _as_operator(actor):
            export = export_request(kind=kind, format=format, filters={}, requested_by_id=getattr(actor, "pk", None))
        return {"export": str(export.pk), "kind": kind, "format": format}

    return _perform(kind=Kind.TENANT_EXPORT, actor=actor, reason=reason, target=f"tenant {tenant.slug}",
                    tenant_id=tenant.pk, do=do)


def tenant_grant_support(*, tenant: Tenant, actor, operator, reason: str, hours: float) -> OperatorAction:
    """Open the tenant to ``operator`` for ``hours`` (apps.accounts.support); the owners see the grant."""
    from apps.accounts.support import support_grant_create

    _refuse_public(tenant)

    def do():
        grant = support_grant_create(tenant_id=tenant.pk, operator=operator, reason=reason.strip(), hours=hours,
                                     granted_by=actor)
        return {"grant": grant.pk, "operator": operator.email, "hours": hours,
                "expires_at": grant.expires_at.isoformat()}

    return _perform(kind=Kind.TENANT_SUPPORT, actor=actor, reason=reason, target=f"tenant {tenant.slug}",
                    tenant_id=tenant.pk, do=do)


# --- shards ----------------------------------------------------------------------


def _start_moves(plan: list[tuple[Tenant, Shard]], *, actor, reason: str) -> dict:
    """Start each planned move; a tenant that cannot move now (an unfinished
    move, say) is skipped and named, the others go ahead."""
    started, skipped = [], {}
    for tenant, target in plan:
        try:
            started.append(_start_move(tenant=tenant, target=target, actor=actor, reason=reason))
        except Exception as exc:
            skipped[tenant.slug] = _message(exc)
    return {"moves": started, "skipped": skipped,
            "plan": [[tenant.slug, tenant.shard.name if tenant.shard else None, target.name]
                     for tenant, target in plan]}


def shard_drain(*, shard: Shard, actor, reason: str) -> OperatorAction:
    """Mark the shard draining (it takes no new tenants) and move every
    tenant off it, by the drain plan."""
    from .selectors import drain_plan

    reason = clean_reason(reason)

    def do():
        plan = drain_plan(shard)
        if not plan and shard.tenants.exists():
            raise ConsoleError(f"No other active shard can take shard {shard.name}'s tenants.")
        Shard.objects.filter(pk=shard.pk).update(state=Shard.State.DRAINING)
        return {"state": [shard.state, Shard.State.DRAINING], **_start_moves(plan, actor=actor, reason=reason)}

    return _perform(kind=Kind.SHARD_DRAIN, actor=actor, reason=reason, target=f"shard {shard.name}",
                    shard_name=shard.name, atomic=False, do=do)


def shards_rebalance(*, actor, reason: str) -> OperatorAction:
    """Start the moves of the rebalance plan (apps.tenancy.placement.rebalance_plan)."""
    from .selectors import rebalance_plan

    reason = clean_reason(reason)

    def do():
        plan = [(tenant, target) for tenant, _source, target in rebalance_plan()]
        if not plan:
            raise ConsoleError("The shards are balanced: the plan has no moves.")
        return _start_moves(plan, actor=actor, reason=reason)

    return _perform(kind=Kind.SHARD_REBALANCE, actor=actor, reason=reason, target="all shards", atomic=False, do=do)


# --- dead letters --------------------------------------------------------------------


def _waiting(ids: list[int]) -> tuple[list[DeadLetter], str, int | None]:
    """The dead letters of ``ids`` still waiting (at most MAX_BULK), the action's
    target text, and their tenant when they all belong to one."""
    rows = list(DeadLetter.objects.filter(pk__in=ids[:MAX_BULK], status=DeadLetter.Status.DEAD).order_by("pk"))
    if not rows:
        raise ConsoleError("None of these dead letters is waiting any more (replayed or discarded already).")
    tenants = {r.tenant_id for r in rows}
    target = f"dead letter {rows[0].pk}" if len(rows) == 1 else f"{len(rows)} dead letters"
    return rows, target, (tenants.pop() if len(tenants) == 1 else None)


def dead_letters_replay(*, ids: list[int], actor, reason: str, filters: dict | None = None) -> OperatorAction:
    """Send the dead letters ``ids`` (those still dead) again through the
    jobs service. Stops at the first send that fails (the broker is down:
    the rest would fail alike); the record names what went and what did not."""
    from apps.jobs.services import dead_letter_replay

    reason = clean_reason(reason)
    rows, target, tenant_id = _waiting(ids)

    def do():
        replayed, error = [], ""
        for row in rows:
            try:
                dead_letter_replay(dead_letter=row)
                replayed.append(row.pk)
            except Exception as exc:
                error = f"dead letter {row.pk}: {_message(exc)}"
                break
        if not replayed:
            raise ConsoleError(f"Nothing replayed: {error}")
        return {"dead_letters": replayed, "not_replayed": [r.pk for r in rows if r.pk not in replayed],
                "error": error, "filters": filters or {}}

    return _perform(kind=Kind.DEAD_LETTER_REPLAY, actor=actor, reason=reason, target=target, tenant_id=tenant_id,
                    atomic=False, do=do)


def dead_letters_discard(*, ids: list[int], actor, reason: str, filters: dict | None = None) -> OperatorAction:
    from apps.jobs.services import dead_letter_discard

    reason = clean_reason(reason)
    rows, target, tenant_id = _waiting(ids)

    def do():
        for row in rows:
            dead_letter_discard(dead_letter=row)
        return {"dead_letters": [r.pk for r in rows], "filters": filters or {}}

    return _perform(kind=Kind.DEAD_LETTER_DISCARD, actor=actor, reason=reason, target=target, tenant_id=tenant_id,
                    do=do)


# --- a whole tenant: export, offboarding (apps/lifecycle) --------------------------
TENANT_OFFBOARD = Kind.TENANT_OFFBOARD
TENANT_OFFBOARD_UNDO = Kind.TENANT_OFFBOARD_UNDO


def tenant_export_whole(*, tenant: Tenant, actor, reason: str) -> OperatorAction:
    """Archive every table, control-plane row and file of the tenant (the export workers run it)."""
    from apps.lifecycle.services import export_request

    _refuse_public(tenant)

    def do():
        export = export_request(tenant=tenant, requested_by_id=getattr(actor, "pk", None))
        return {"tenant_export": str(export.pk)}

    return _perform(kind=Kind.TENANT_EXPORT, actor=actor, reason=reason, target=f"tenant {tenant.slug}",
                    tenant_id=tenant.pk, do=do)


def tenant_offboard(*, tenant: Tenant, actor, reason: str, now: bool = False) -> OperatorAction:
    """Delete the tenant: suspended at once, erased after the grace period (or at the next erasure run)."""
    from apps.lifecycle.services import offboard_request

    _refuse_public(tenant)

    def do():
        offboarding = offboard_request(tenant=tenant, requested_as="operator", requested_by_id=getattr(actor, "pk", None),
                                       requested_by=getattr(actor, "email", str(actor)), reason=reason, now=now)
        return {"offboarding": offboarding.pk, "erase_after": offboarding.erase_after.isoformat()}

    return _perform(kind=TENANT_OFFBOARD, actor=actor, reason=reason, target=f"tenant {tenant.slug}",
                    tenant_id=tenant.pk, do=do)


def tenant_offboard_undo(*, tenant: Tenant, actor, reason: str) -> OperatorAction:
    from apps.lifecycle.services import offboard_undo

    def do():
        offboarding = offboard_undo(tenant=tenant, cancelled_by=getattr(actor, "email", str(actor)))
        return {"offboarding": offboarding.pk, "status": offboarding.previous_status}

    return _perform(kind=TENANT_OFFBOARD_UNDO, actor=actor, reason=reason, target=f"tenant {tenant.slug}",
                    tenant_id=tenant.pk, do=do)


# --- jobs -------------------------------------------------------------------------------


def job_retry(*, job, actor, reason: str) -> OperatorAction:
    """Send a failed or dead job again now (its dead letter is replayed under
    the job's task id: apps.jobs.services.job_retry); recorded as a replay."""
    from apps.jobs.services import JobNotRetryable, job_dead_letter
    from apps.jobs.services import job_retry as retry

    reason = clean_reason(reason)

    def do():
        dead = job_dead_letter(job)
        try:
            retry(job=job)
        except JobNotRetryable as exc:
            raise ConsoleError(str(exc)) from exc
        return {"job": job.task_id, "task": job.task_name, "dead_letters": [dead.pk] if dead else []}

    return _perform(kind=Kind.DEAD_LETTER_REPLAY, actor=actor, reason=reason, target=f"job {job.task_id}",
                    tenant_id=job.tenant_id, atomic=False, do=do)


def job_discard(*, job, actor, reason: str) -> OperatorAction:
    from apps.jobs.services import JobNotRetryable, job_dead_letter
    from apps.jobs.services import job_discard as discard

    reason = clean_reason(reason)

    def do():
        dead = job_dead_letter(job)
        try:
            discard(job=job)
        except JobNotRetryable as exc:
            raise ConsoleError(str(exc)) from exc
        return {"job": job.task_id, "task": job.task_name, "dead_letters": [dead.pk] if dead else []}

    return _perform(kind=Kind.DEAD_LETTER_DISCARD, actor=actor, reason=reason, target=f"job {job.task_id}",
                    tenant_id=job.tenant_id, do=do)


def tenants_reindex_all(*, actor, reason: str) -> OperatorAction:
    """Rebuild every tenant's search index: one batch of ``search.rebuild_index``
    jobs (apps/jobs/batches.py), written with the operator action in one
    transaction; the batch page follows it and reports once all finished."""
    from apps.jobs.batches import BatchJob, batch_create
    from apps.jobs.tasks import batch_report
    from apps.search.tasks import rebuild_index

    from .selectors import console_tenants

    reason = clean_reason(reason)

    def do():
        tenants = list(console_tenants().filter(status=Tenant.Status.ACTIVE, shard__isnull=False).order_by("pk"))
        if not tenants:
            raise ConsoleError("No active tenant to reindex.")
        batch = batch_create(name="Rebuild every tenant's search index",
                             jobs=[BatchJob(rebuild_index, kwargs={"restart": True}, tenant=t) for t in tenants],
                             callback=batch_report, created_by=getattr(actor, "email", str(actor)))
        return {"batch": str(batch.pk), "tenants": len(tenants), "task": "search.rebuild_index"}

    return _perform(kind=Kind.TENANT_REINDEX, actor=actor, reason=reason, target="all tenants", do=do)
