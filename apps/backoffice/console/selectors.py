"""Reads behind the operator console's pages."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import Count, Q

from apps.jobs.models import DeadLetter
from apps.tenancy import placement
from apps.tenancy.models import Move, Shard, Tenant

from ..models import OperatorAction

logger = logging.getLogger(__name__)


def console_tenants():
    """Tenants an operator may act on: never the platform's own (public) row."""
    return Tenant.objects.exclude(schema_name="public").select_related("shard", "plan")


def tenant_for_console(slug: str) -> Tenant | None:
    return console_tenants().filter(slug=slug).first()


def shard_for_console(name: str) -> Shard | None:
    return Shard.objects.filter(name=name).first()


@contextmanager
def _bounded(alias: str, seconds: float):
    """A cursor whose statements stop after ``seconds`` (SET LOCAL: safe behind PgBouncer)."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = %s", [int(seconds * 1000)])
        yield cursor


SCHEMA_SIZES_SQL = """
SELECT n.nspname, coalesce(sum(pg_total_relation_size(c.oid)), 0)
FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')
WHERE n.nspname = ANY(%s) GROUP BY 1
"""


def schema_sizes(alias: str, schemas: list[str]) -> dict[str, int] | None:
    """Bytes per schema on shard ``alias`` (tables, indexes, TOAST), or None
    when the shard did not answer within METRICS_TIMEOUT_SECONDS."""
    if not schemas:
        return {}
    try:
        with _bounded(alias, settings.METRICS_TIMEOUT_SECONDS) as cursor:
            cursor.execute(SCHEMA_SIZES_SQL, [schemas])
            return {schema: int(size) for schema, size in cursor.fetchall()}
    except DatabaseError as exc:
        logger.warning("schema sizes unavailable", extra={"shard": alias, "error": str(exc)[:200]})
        connections[alias].close()
        return None


@dataclass
class ShardTenant:
    tenant: Tenant
    size: int | None


def shard_tenants_by_size(shard: Shard) -> tuple[list[ShardTenant], bool]:
    """The shard's tenants, largest first; (rows, sizes_available)."""
    tenants = list(console_tenants().filter(shard=shard).order_by("slug"))
    sizes = schema_sizes(shard.alias, [t.schema_name for t in tenants]) if shard.alias in settings.DATABASES else None
    rows = [ShardTenant(t, (sizes or {}).get(t.schema_name)) for t in tenants]
    rows.sort(key=lambda r: (-(r.size or 0), r.tenant.slug))
    return rows, sizes is not None


def target_shards(*, excluding: Shard | None = None) -> list[Shard]:
    """Shards a tenant may move to: configured here, active, weight > 0."""
    shards = Shard.objects.filter(state=Shard.State.ACTIVE, weight__gt=0).annotate(tenant_count=Count("tenants"))
    if excluding is not None:
        shards = shards.exclude(pk=excluding.pk)
    return [s for s in shards.order_by("name") if s.alias in settings.DATABASES]


def drain_plan(shard: Shard) -> list[tuple[Tenant, Shard]]:
    """(tenant, target) for every tenant on ``shard``, largest first, by the
    placement policy (apps.tenancy.placement.drain_plan)."""
    targets = target_shards(excluding=shard)
    if not targets:
        return []
    rows, _ = shard_tenants_by_size(shard)
    return placement.drain_plan([row.tenant for row in rows], targets)


def rebalance_plan() -> list[tuple[Tenant, Shard, Shard]]:
    """The registry's rebalance plan (apps.tenancy.placement.rebalance_plan) as rows."""
    moves = placement.rebalance_plan()
    tenants = {t.slug: t for t in console_tenants().filter(slug__in=[slug for slug, _, _ in moves])}
    shards = {s.name: s for s in Shard.objects.all()}
    return [(tenants[slug], shards[src], shards[dst]) for slug, src, dst in moves if slug in tenants]


def open_moves():
    """Moves not finished yet, newest first."""
    try:
        from apps.fleet.selectors import moves_in_progress
    except ImportError:  # pragma: no cover - older tenancy without the selector
        return Move.objects.filter(finished_at__isnull=True).select_related("tenant", "source", "target")
    return moves_in_progress()


def progress_of(move: Move) -> dict:
    """The move's progress (apps.fleet.selectors.move_progress), JSON-ready."""
    from apps.fleet.selectors import move_progress

    progress = dict(move_progress(move))
    for key, value in list(progress.items()):
        if hasattr(value, "isoformat"):
            progress[key] = value.isoformat()
    progress.setdefault("id", move.pk)
    progress["tenant"] = move.tenant.slug if move.tenant_id else None
    progress["source"] = move.source.name
    progress["target"] = move.target.name
    return progress


# --- dead letters ------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterFilter:
    task: str = ""
    tenant: str = ""
    error: str = ""
    status: str = DeadLetter.Status.DEAD

    @classmethod
    def from_data(cls, data) -> DeadLetterFilter:
        status = data.get("status", DeadLetter.Status.DEAD)
        if status not in DeadLetter.Status.values and status != "all":
            status = DeadLetter.Status.DEAD
        return cls(task=(data.get("task") or "").strip()[:200], tenant=(data.get("tenant") or "").strip()[:40],
                   error=(data.get("error") or "").strip()[:200], status=status)

    def as_query(self) -> dict[str, str]:
        return {k: v for k, v in {"task": self.task, "tenant": self.tenant, "error": self.error,
                                  "status": self.status}.items() if v}

    @property
    def any(self) -> bool:
        return bool(self.task or self.tenant or self.error)


def dead_letters(flt: DeadLetterFilter):
    """Dead letters matching the filter: task name exact, tenant slug exact,
    error a substring of the exception text."""
    rows = DeadLetter.objects.all()
    if flt.status != "all":
        rows = rows.filter(status=flt.status)
    if flt.task:
        rows = rows.filter(task_name=flt.task)
    if flt.tenant:
        rows = rows.filter(tenant_slug=flt.tenant)
    if flt.error:
        rows = rows.filter(exception__icontains=flt.error)
    return rows


def dead_letter_task_names() -> list[str]:
    return list(DeadLetter.objects.filter(status=DeadLetter.Status.DEAD).order_by("task_name")
                .values_list("task_name", flat=True).distinct())


def dead_letters_by_tenant(tenant: Tenant) -> dict[str, int]:
    return dict(DeadLetter.objects.filter(Q(tenant_id=tenant.pk), status=DeadLetter.Status.DEAD)
                .values_list("task_name").annotate(n=Count("id")).order_by())


# --- operator actions -----------------------------------------------------------


def operator_actions(*, tenant_id: int | None = None, kind: str = "", actor: str = ""):
    rows = OperatorAction.objects.select_related("actor")
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    if kind:
        rows = rows.filter(kind=kind)
    if actor:
        rows = rows.filter(actor_email__icontains=actor)
    return rows


def action_moves(action: OperatorAction) -> list[Move]:
    ids = action.move_ids
    moves = {m.pk: m for m in Move.objects.filter(pk__in=ids).select_related("tenant", "source", "target")}
    return [moves[i] for i in ids if i in moves]
