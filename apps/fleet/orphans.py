"""Schemas a shard holds that the registry does not place there.

They are what interrupted operations leave: the renamed source copy of a
move killed after its switch, a target copy whose rollback could not reach
the target, a schema whose provisioning failed halfway. Nothing reads them;
they cost disk and could confuse an operator restoring by hand.

An orphan is stamped the first time it is seen (a comment on the schema, so
the mark travels with it and needs no table), and is dropped only once it
has been an orphan for the grace period, after checking the registry again.
The target copy of an unfinished move is not an orphan: its move owns it.

Replication objects named for a move (publication and slot on the source,
subscription on the target, see ``apps.fleet.logical``) are orphans as
soon as their move is over: a slot nobody reads makes its server keep WAL
without bound, so these are dropped without a grace period (they hold no
tenant data), by ``shard_orphans --drop --yes`` and by the recovery task.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import OperationalError, connections
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from apps.tenancy import planes, schemas
from apps.tenancy.models import Move, Shard, Tenant

from . import logical

logger = logging.getLogger(__name__)

TENANT_SCHEMA_PREFIX = "t_"
STAMP = "orphan since "


@dataclass
class Orphan:
    shard: str
    alias: str
    schema: str
    since: dt.datetime
    reason: str


def _owned_placements() -> set[tuple[int, str]]:
    """(shard id, schema) that the registry or an unfinished move accounts for."""
    owned = set(Tenant.objects.exclude(shard=None).values_list("shard_id", "schema_name"))
    for move in Move.objects.filter(finished_at__isnull=True):
        # Its target copy, until the move finishes or rolls back. Not the
        # renamed source copy: that exists only once the target holds the
        # tenant's data, so it is an orphan from the moment it is made.
        owned.add((move.target_id, move.schema_name))
    return owned


def _reason(shard: Shard, schema: str) -> str:
    move = Move.objects.filter(retired_schema=schema, source=shard).select_related("target").first()
    if move is not None:
        return f"source copy left by move {move.pk} (now on {move.target.name}, {move.phase})"
    tenant = Tenant.objects.filter(schema_name=schema).select_related("shard").first()
    if tenant is not None:
        return f"tenant {tenant.slug} lives on {tenant.shard.name if tenant.shard else 'no shard'}"
    return "no tenant has this schema"


def _stamped(raw: str | None) -> dt.datetime | None:
    if raw and raw.startswith(STAMP):
        try:
            return dt.datetime.fromisoformat(raw.removeprefix(STAMP))
        except ValueError:
            return None
    return None


def orphan_list(*, shard_names: list[str] | None = None) -> list[Orphan]:
    """Every orphan schema on every configured shard (or those named), stamped if new."""
    owned = _owned_placements()
    configured = set(planes.shard_aliases())
    shards = Shard.objects.filter(alias__in=configured).order_by("name")
    if shard_names:
        shards = shards.filter(name__in=shard_names)
    found = []
    now = timezone.now()
    for shard in shards:
        with connections[shard.alias].cursor() as cursor:
            cursor.execute(
                "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace "
                "WHERE nspname LIKE %s ORDER BY nspname", [TENANT_SCHEMA_PREFIX.replace("_", r"\_") + "%"])
            for schema, comment in cursor.fetchall():
                since = _stamped(comment)
                if (shard.pk, schema) in owned:
                    if since is not None:  # placed here again: the old mark must not count later
                        cursor.execute(f"COMMENT ON SCHEMA {q(schema)} IS NULL")
                    continue
                if since is None:
                    since = now
                    cursor.execute(f"COMMENT ON SCHEMA {q(schema)} IS %s", [STAMP + since.isoformat()])
                found.append(Orphan(shard.name, shard.alias, schema, since, _reason(shard, schema)))
    return found


def orphans_drop(*, grace: dt.timedelta, report: Callable[[str], None] = lambda line: None) -> list[Orphan]:
    """Drop the orphans older than ``grace``; the ones dropped."""
    dropped = []
    for orphan in orphan_list():
        if timezone.now() - orphan.since < grace:
            continue
        shard = Shard.objects.get(name=orphan.shard)
        if (shard.pk, orphan.schema) in _owned_placements():  # placed meanwhile
            continue
        schemas.drop_schema(orphan.alias, orphan.schema)
        report(f"dropped {orphan.schema} on {orphan.shard} ({orphan.reason})")
        dropped.append(orphan)
    return dropped


@dataclass
class ReplicationOrphan:
    shard: str
    alias: str
    leftover: logical.Leftover
    reason: str


def replication_orphans(*, shard_names: list[str] | None = None) -> list[ReplicationOrphan]:
    """Publications, subscriptions and slots of moves that are over, on every configured shard."""
    unfinished = {m.pk: m for m in Move.objects.filter(finished_at__isnull=True).select_related("source")}
    busy_sources = {m.source.alias for m in unfinished.values()}
    shards = Shard.objects.filter(alias__in=set(planes.shard_aliases())).order_by("name")
    if shard_names:
        shards = shards.filter(name__in=shard_names)
    found = []
    for shard in shards:
        try:
            found_here = logical.leftovers(shard.alias)
        except OperationalError:  # a shard down: the others are still looked at; the next run sees it
            logger.warning("could not list replication objects", extra={"shard": shard.name})
            continue
        for leftover in found_here:
            if leftover.move_id is None:
                if shard.alias in busy_sources:  # may be a live move's table sync
                    continue
                reason = "table-sync slot of a subscription that is gone"
            elif leftover.move_id in unfinished:
                continue
            else:
                move = Move.objects.filter(pk=leftover.move_id).first()
                reason = f"left by move {leftover.move_id} ({move.phase if move else 'no such move'})"
            found.append(ReplicationOrphan(shard.name, shard.alias, leftover, reason))
    return found


def replication_orphans_drop(*, report: Callable[[str], None] = lambda line: None) -> list[ReplicationOrphan]:
    """Drop every replication orphan: subscriptions first (they release their slots), then slots and publications."""
    found = replication_orphans()
    order = {"subscription": 0, "slot": 1, "publication": 2}
    dropped = []
    for orphan in sorted(found, key=lambda o: order[o.leftover.kind]):
        try:
            logical.drop_leftover(orphan.alias, orphan.leftover)
        except Exception:  # one stuck object must not keep the others (and their WAL) around
            logger.exception("could not drop a replication orphan", extra={"name": orphan.leftover.name})
            continue
        report(f"dropped {orphan.leftover.kind} {orphan.leftover.name} on {orphan.shard} ({orphan.reason})")
        dropped.append(orphan)
    return dropped
