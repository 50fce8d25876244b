"""Reads of the tenant registry."""

from __future__ import annotations

import pickle
from collections.abc import Callable

from django.conf import settings

from apps.caching import health, pushed, versioned

from .models import Domain, Tenant

_MISSING = "missing"
# hostname -> (generation, version, pickled tenant or _MISSING, tenant id or
# None): the host lookup held in this process, used while Redis says its
# version is current. Each request unpickles its own copy, so nothing one
# request sets on its tenant reaches another.
_held: dict[str, tuple[int, str, bytes, int | None]] = {}
HELD_HOSTNAMES = 50_000

# Given the tenant id this process last saw on a host, the further keys to
# read in the same round trip: (scope version keys, plain keys).
ExtraKeys = Callable[[int], tuple[list[str], list[str]]]


def hostname_version_key(hostname: str) -> str:
    return f"{pushed.watched_prefix()}host:{hostname.lower()}"


def tenant_for_hostname(hostname: str) -> Tenant | None:
    """The tenant serving ``hostname``, or None when no domain matches."""
    return resolve_host(hostname)[0]


def resolve_host(hostname: str, extra_keys: ExtraKeys | None = None) -> tuple[Tenant | None, dict[str, str | None]]:
    """The tenant serving ``hostname`` (or None), and the values of the
    ``extra_keys`` read along with it.

    No Redis round trip and no database query when warm: the versions are
    held in process and dropped by Redis' pushes (``apps.caching.pushed``).
    Otherwise one round trip: the hostname's version and, in the same script, the keys ``extra_keys`` names for the
    tenant this process last saw on the host (its access version,
    read-your-writes). The tenant row itself is held in process and only
    crosses the wire when its version moved. Signals raise the hostname's
    version whenever a tenant, its domain or its shard changes (after the
    control plane commits), so a suspended tenant is seen on the next
    request in every process. Unknown hosts are cached briefly too, so a
    flood of requests for made-up subdomains does not reach the database
    either. While Redis is suspect (see ``apps.caching.health``) lookups go
    to the database, and entries from before a Redis outage are never served
    after it. The extra values are returned only when the guess was right
    (the host still serves that tenant); otherwise the dict is empty and the
    caller reads them itself.
    """
    hostname = hostname.lower()
    held = _held.get(hostname)
    scope_keys, plain_keys = extra_keys(held[3]) if extra_keys and held and held[3] else ([], [])
    keys = [*scope_keys, *plain_keys]
    host_key = hostname_version_key(hostname)
    watching = pushed.start_read()
    warm = _held_answer(watching, held, host_key, keys)
    if warm is not None:
        return warm
    found = versioned.read_front(host_key, f"{versioned.key_prefix()}:host:{hostname}",
                                 held_version=held[1] if held else None, scope_keys=scope_keys,
                                 plain_keys=plain_keys)
    if found is None:
        return _load(hostname), {}
    if watching is not None:
        watching[0].remember(watching[1], [host_key, *keys], [found.version, *found.values])
    raw = _tenant_bytes(hostname, held, found)
    cached = pickle.loads(raw)
    tenant = None if cached == _MISSING else cached
    tenant_id = tenant.pk if tenant is not None else None
    _hold(hostname, held, (found.read.generation, found.version, raw, tenant_id))
    # The extra values were read for the tenant this process last saw on the
    # host: they count only when the host still serves it.
    same_tenant = bool(keys) and tenant_id is not None and tenant_id == held[3]
    return tenant, dict(zip(keys, found.values, strict=True)) if same_tenant else {}


def _held_answer(watching, held, host_key: str, keys: list[str]):
    """The answer from what this process holds, with no round trip: every
    version this request needs is held and no push has dropped it
    (apps.caching.pushed); None when a round trip is needed."""
    if watching is None or held is None or held[0] != health.generation():
        return None
    values = watching[0].get([host_key, *keys])
    if values is None or values[0] != held[1]:
        return None
    tenant = None if held[3] is None else pickle.loads(held[2])
    return tenant, dict(zip(keys, values[1:], strict=True))


def _tenant_bytes(hostname: str, held, found) -> bytes:
    """The pickled tenant (or _MISSING) at the version Redis gave: the one held
    in process, the one read with the version, or a fresh database read
    stored for the other processes."""
    if held is not None and held[0] == found.read.generation and held[1] == found.version:
        return held[2]
    if found.read.raw is not None:
        return found.read.raw
    tenant = _load(hostname)
    raw = pickle.dumps(tenant or _MISSING)
    timeout = settings.TENANT_CACHE_TIMEOUT if tenant else settings.TENANT_NEGATIVE_CACHE_TIMEOUT
    versioned.store(found.read, raw, timeout)
    return raw


def _hold(hostname: str, held, entry: tuple[int, str, bytes, int | None]) -> None:
    if held is not None and held[:2] == entry[:2]:
        return
    if len(_held) >= HELD_HOSTNAMES:
        _held.clear()
    _held[hostname] = entry


def _load(hostname: str) -> Tenant | None:
    domain = Domain.objects.select_related("tenant__shard").filter(domain=hostname).first()
    return domain.tenant if domain is not None else None


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
