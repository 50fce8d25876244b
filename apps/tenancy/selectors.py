"""Reads of the tenant registry."""

from __future__ import annotations

import pickle

from django.conf import settings

from apps.caching import versioned

from .models import Domain, Tenant

_MISSING = "missing"


def hostname_version_key(hostname: str) -> str:
    return f"{versioned.key_prefix()}:host:{hostname.lower()}:version"


def tenant_for_hostname(hostname: str) -> Tenant | None:
    """The tenant serving ``hostname``, or None when no domain matches.

    Cached in Redis so that resolving a request's tenant costs one Redis round
    trip and no database query; signals raise the hostname's version whenever
    a tenant, its domain or its shard changes (after the control plane
    commits). Unknown hosts are cached briefly too, so a flood of requests for
    made-up subdomains does not reach the database either. While Redis is
    suspect (see ``apps.caching.health``) lookups go to the database, and
    entries from before a Redis outage are never served after it: a tenant
    suspended, frozen or moved during the outage is seen at once.
    """
    hostname = hostname.lower()
    found = versioned.read(hostname_version_key(hostname), f"{versioned.key_prefix()}:host:{hostname}")
    if found is not None and found.raw is not None:
        cached = pickle.loads(found.raw)
        return None if cached == _MISSING else cached
    domain = Domain.objects.select_related("tenant__shard").filter(domain=hostname).first()
    tenant = domain.tenant if domain is not None else None
    if found is not None:
        timeout = settings.TENANT_CACHE_TIMEOUT if tenant else settings.TENANT_NEGATIVE_CACHE_TIMEOUT
        versioned.store(found, pickle.dumps(tenant or _MISSING), timeout)
    return tenant


def tenant_get(*, slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug).first()


def tenant_list():
    return Tenant.objects.exclude(schema_name="public").order_by("slug")


def tenant_primary_hostname(tenant: Tenant) -> str | None:
    domain = tenant.domains.filter(is_primary=True).first() or tenant.domains.first()
    return domain.domain if domain else None


def shard_list_with_counts():
    """Shards with ``tenant_count`` annotated, for operators."""
    from django.db.models import Count

    from .models import Shard

    return Shard.objects.annotate(tenant_count=Count("tenants")).order_by("name")


def tenant_location(*, slug: str) -> dict | None:
    """Where a tenant lives: shard, alias, schema, and whether it is writable."""
    tenant = Tenant.objects.select_related("shard").filter(slug=slug).first()
    if tenant is None:
        return None
    return {
        "slug": tenant.slug,
        "schema": tenant.schema_name,
        "shard": tenant.shard.name if tenant.shard else None,
        "alias": tenant.shard.alias if tenant.shard else None,
        "shard_state": tenant.shard.state if tenant.shard else None,
        "writes_frozen": tenant.writes_frozen,
        "status": tenant.status,
    }


def rebalance_plan() -> list[tuple[str, str, str]]:
    """Moves (tenant slug, from shard, to shard) that would even out the shards.

    Targets are tenant counts proportional to weight over active shards; a
    draining shard's target is zero, so its tenants are all planned away.
    Read-only shards are left alone. Tenant count is the load measure here;
    data size per tenant is the next refinement.
    """
    from .models import Shard

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
