"""What a move reports and records: its errors, its report, its Move row."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import IntegrityError

from apps.tenancy.models import Move, Shard, Tenant


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


def open_move(tenant: Tenant) -> Move | None:
    return Move.objects.select_related("tenant", "source", "target").filter(
        tenant=tenant, finished_at__isnull=True).first()


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


def mover_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]
