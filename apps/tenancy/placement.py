"""Where tenants go: a new tenant, a rebalance, a shard being drained.

New tenants go to the shard with the most headroom. Over the shards that
take new tenants (state active, weight > 0, connection configured in this
process), with

    capacity(s) = weight(s) / sum of weights
    used(s)     = (tenants(s) + 1) / (sum of tenants + 1) * (1 - SIZE_SHARE)
                + bytes(s) / sum of bytes * SIZE_SHARE          (size term 0 when no shard holds data)
    headroom(s) = capacity(s) - used(s)

a new tenant goes to the shard with the largest headroom; ties go to the
shard with fewer tenants, then to the first by name. ``tenants(s)`` counts
the tenants the registry places on the shard, ``bytes(s)`` the on-disk size
of their schemas there (tables, indexes and TOAST, from the server's
catalog), and the ``+ 1`` counts the newcomer on the shard being considered,
so an empty shard is preferred over a shard that only looks empty in bytes.
SIZE_SHARE (0.5) weighs data size against tenant count: tenant count stands
for per-tenant overhead (connections, catalog entries, per-schema jobs),
size for disk and cache.

So two shards of equal weight fill evenly, a shard of weight 200 takes
about twice the tenants and data of one of weight 100, and a shard holding a
few very large tenants gets new tenants only once the others have caught up
in size.

Rebalancing plans moves towards tenant counts proportional to weight (see
``rebalance_plan``); draining a shard sends each of its tenants, largest
first, to the receiving shard with the lowest count relative to weight (see
``drain_plan``). This module only plans: moves are made by apps.fleet
(``rebalance_shards``, the operator console).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections, models

from . import planes
from .models import Shard, Tenant
from .selectors import shard_list_with_counts

SIZE_SHARE = 0.5


@dataclass(frozen=True)
class ShardLoad:
    shard: Shard
    tenants: int
    bytes: int


def schema_bytes(alias: str, schemas: list[str]) -> int:
    """On-disk size of ``schemas`` on ``alias`` (tables with their indexes and TOAST)."""
    if not schemas:
        return 0
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'm')",
            [schemas],
        )
        return int(cursor.fetchone()[0])


def shard_loads() -> list[ShardLoad]:
    """The load of every shard that takes new tenants."""
    configured = set(planes.shard_aliases())
    loads = []
    for shard in Shard.objects.filter(state=Shard.State.ACTIVE, weight__gt=0).annotate(
            tenant_count=models.Count("tenants")).order_by("name"):
        if shard.alias not in configured:
            continue
        placed = list(Tenant.objects.filter(shard=shard).values_list("schema_name", flat=True))
        loads.append(ShardLoad(shard, shard.tenant_count, schema_bytes(shard.alias, placed)))
    return loads


def headroom(load: ShardLoad, loads: list[ShardLoad]) -> float:
    """capacity - used, as in the module docstring."""
    capacity = load.shard.weight / sum(item.shard.weight for item in loads)
    tenants = (load.tenants + 1) / (sum(item.tenants for item in loads) + 1)
    total_bytes = sum(item.bytes for item in loads)
    if not total_bytes:
        return capacity - tenants
    return capacity - (tenants * (1 - SIZE_SHARE) + load.bytes / total_bytes * SIZE_SHARE)


def shard_for_new_tenant() -> Shard | None:
    """The shard with the most headroom, or None when no shard takes new tenants."""
    loads = shard_loads()
    if not loads:
        return None
    best = max(loads, key=lambda load: (round(headroom(load, loads), 9), -load.tenants))
    ties = [load for load in loads if round(headroom(load, loads), 9) == round(headroom(best, loads), 9)
            and load.tenants == best.tenants]
    return min(ties, key=lambda load: load.shard.name).shard


def rebalance_plan() -> list[tuple[str, str, str]]:
    """Moves (tenant slug, from shard, to shard) that would even out the shards.

    Targets are tenant counts proportional to weight over active shards; a
    draining shard's target is zero, so its tenants are all planned away.
    Read-only shards are left alone. Tenant count is the load measure here;
    data size per tenant is the next refinement.
    """
    shards = [s for s in shard_list_with_counts() if s.state != Shard.State.READ_ONLY]
    receiving = [s for s in shards if s.state == Shard.State.ACTIVE and s.weight > 0]
    if not receiving:
        return []
    total = sum(s.tenant_count for s in shards)
    weight_sum = sum(s.weight for s in receiving)
    ideal = {s.name: (total * s.weight / weight_sum if s in receiving else 0.0) for s in shards}
    count = {s.name: s.tenant_count for s in shards}
    movable = {
        s.name: list(Tenant.objects.filter(shard=s).order_by("-created_at").values_list("slug", flat=True))
        for s in shards
    }
    moves = []
    while True:
        donor = max(shards, key=lambda s: (count[s.name] - ideal[s.name], s.name))
        taker = min(receiving, key=lambda s: (count[s.name] - ideal[s.name], s.name))
        surplus, deficit = count[donor.name] - ideal[donor.name], ideal[taker.name] - count[taker.name]
        if donor.name == taker.name or not movable[donor.name] or surplus < 1 or surplus + deficit <= 1:
            return moves
        moves.append((movable[donor.name].pop(0), donor.name, taker.name))
        count[donor.name] -= 1
        count[taker.name] += 1


def drain_plan(tenants: list[Tenant], targets: list[Shard]) -> list[tuple[Tenant, Shard]]:
    """(tenant, target) for each of ``tenants``, the tenants of a shard being
    drained, largest first: each to the least loaded of ``targets`` (tenant
    count relative to weight, counting the moves planned before it; ties by
    name). ``targets`` are the shards that may receive them, with
    ``tenant_count`` annotated."""
    if not targets:
        return []
    load = {s.pk: s.tenant_count for s in targets}
    plan = []
    for tenant in tenants:
        target = min(targets, key=lambda s: ((load[s.pk] + 1) / s.weight, s.name))
        load[target.pk] += 1
        plan.append((tenant, target))
    return plan
