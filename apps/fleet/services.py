"""Starting a tenant move from other code (the operator console): recorded here, run by a worker."""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.tenancy.models import Move, Shard, Tenant

from . import moves
from .records import move_record
from .tasks import run_move

logger = logging.getLogger(__name__)


def move_start(*, tenant: Tenant, target: Shard, actor: str, reason: str) -> Move:
    """Record a move of ``tenant`` to ``target`` and hand it to a maintenance worker.

    Validates first (ValidationError naming the field: same shard, target not
    active or not configured, schema behind on migrations; MoveError when the
    tenant already has an unfinished move). The Move row is created in phase
    prepare and the task ``tenancy.run_move`` is sent once it is committed;
    the worker takes the tenant's move lock and runs every phase. If the
    worker dies, the recovery task (or ``move_tenant --resume``) settles the
    move. Poll ``selectors.move_progress(move)`` for where it stands.
    """
    if not reason.strip():
        raise ValidationError({"reason": "Say why the tenant moves (kept with the move)."})
    tenant = Tenant.objects.select_related("shard").get(pk=tenant.pk)
    moves.validate_move(tenant, target)
    with transaction.atomic(using="default"):
        move = move_record(tenant=tenant, target=target, mover="queued")
        move.requested_by, move.reason = actor[:200], reason.strip()
        move.save(update_fields=["requested_by", "reason"])
        transaction.on_commit(lambda: _enqueue_move(move, run_move), using="default")
    logger.info("tenant move queued", extra={"tenant_slug": tenant.slug, "move": move.pk, "target": target.name,
                                             "actor": actor, "reason": reason[:500]})
    return move


def _enqueue_move(move: Move, task) -> None:
    """Send the move to a worker, once; a broker that does not answer is written
    on the move (the console shows it) and the recovery task rolls the move
    back after twice the lease, as for any mover that never ran."""
    try:
        # Named here rather than in CELERY_TASK_ROUTES: this is the task's one sender.
        task.apply_async((move.pk,), queue="maintenance", retry=False)
    except Exception as exc:  # the broker is down: say so on the record instead of failing the caller
        logger.warning("could not queue a tenant move", extra={"move": move.pk, "error": str(exc)[:200]})
        Move.objects.filter(pk=move.pk).update(error=f"could not queue the move: {type(exc).__name__}: {exc}"[:2000])
