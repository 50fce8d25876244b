"""Schemas a shard holds that the registry does not place there.

They are what interrupted operations leave: the renamed source copy of a
move killed after its switch, a target copy whose rollback could not reach
the target, a schema whose provisioning failed halfway. Nothing reads them;
they cost disk and could confuse an operator restoring by hand.

An orphan is stamped the first time it is seen (a comment on the schema, so
the mark travels with it and needs no table), and is dropped only once it
has been an orphan for the grace period, after checking the registry again.
The target copy of an unfinished move is not an orphan: its move owns it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from . import planes, schemas
from .models import Move, Shard, Tenant

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
