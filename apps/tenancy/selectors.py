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
    host_key = hostname_version_key(hostname)
    watching = pushed.start_read()
    if watching is not None and held is not None and held[0] == health.generation():
        # No round trip: every version this request needs is held in process
        # and no push has dropped it (apps.caching.pushed).
        values = watching[0].get([host_key, *scope_keys, *plain_keys])
        if values is not None and values[0] == held[1]:
            tenant = None if held[3] is None else pickle.loads(held[2])
            return tenant, dict(zip([*scope_keys, *plain_keys], values[1:], strict=True))
    found = versioned.read_front(host_key, f"{versioned.key_prefix()}:host:{hostname}",
                                 held_version=held[1] if held else None, scope_keys=scope_keys,
                                 plain_keys=plain_keys)
    if found is None:
        return _load(hostname), {}
    if watching is not None:
        watching[0].remember(watching[1], [host_key, *scope_keys, *plain_keys], [found.version, *found.values])
    generation = found.read.generation
    if held is not None and held[0] == generation and held[1] == found.version:
        raw = held[2]
    elif found.read.raw is not None:
        raw = found.read.raw
    else:
        tenant = _load(hostname)
        raw = pickle.dumps(tenant or _MISSING)
        timeout = settings.TENANT_CACHE_TIMEOUT if tenant else settings.TENANT_NEGATIVE_CACHE_TIMEOUT
        versioned.store(found.read, raw, timeout)
    cached = pickle.loads(raw)
    tenant = None if cached == _MISSING else cached
    tenant_id = tenant.pk if tenant is not None else None
    if held is None or held[:2] != (generation, found.version):
        if len(_held) >= HELD_HOSTNAMES:
            _held.clear()
        _held[hostname] = (generation, found.version, raw, tenant_id)
    extra = {}
    if scope_keys or plain_keys:
        if tenant_id is not None and tenant_id == held[3]:
            extra = dict(zip([*scope_keys, *plain_keys], found.values, strict=True))
    return tenant, extra


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


# --- moves ---------------------------------------------------------------------

# How far along a move is when it enters a phase (percent), for the phases
# whose own progress is not measured in bytes: the copy is 5-85 %.
_PHASE_FLOOR = {"prepare": 0.0, "copy": 5.0, "catch_up": 85.0, "freeze": 92.0, "verify": 95.0, "flip": 98.0,
                "retire": 99.0, "done": 100.0, "rolled_back": 100.0}


def move_progress(move) -> dict:
    """Where a move stands, for the operator console and the move command.

    Keys: phase, path ("logical" | "locked" | "" before prepare chose one),
    rows_copied, rows_total (estimate from the source's statistics),
    bytes_copied, bytes_total (estimate), percent (0-100), eta_seconds (None
    when unknown or finished), freeze_seconds, error, finished, started_at,
    heartbeat_at. Reads the Move row only; poll it (``move.refresh_from_db()``
    or a fresh ``Move`` each time).
    """
    from django.utils import timezone

    finished = move.finished_at is not None
    rows_total = max(move.rows_total, move.rows_copied)
    bytes_total = max(move.bytes_total, move.bytes_copied)
    fraction = (move.bytes_copied / bytes_total) if bytes_total else (move.rows_copied / rows_total if rows_total else 0)
    floor = _PHASE_FLOOR.get(move.phase, 0.0)
    if move.phase == "copy":
        percent = floor + 80.0 * min(1.0, fraction)
    else:
        percent = floor
    eta = None
    if not finished and move.phase == "copy" and 0.02 <= fraction < 1:  # below that, no rate worth the name
        elapsed = (timezone.now() - move.started_at).total_seconds()
        eta = round(elapsed * (1 - fraction) / fraction, 1)
    elif not finished and move.phase in ("catch_up", "freeze", "verify", "flip", "retire"):
        eta = 0.0 if move.phase != "catch_up" else None
    return {
        "phase": move.phase,
        "path": move.path,
        "rows_copied": move.rows_copied,
        "rows_total": rows_total,
        "bytes_copied": move.bytes_copied,
        "bytes_total": bytes_total,
        "percent": round(100.0 if finished else min(percent, 99.9), 1),
        "eta_seconds": eta,
        "freeze_seconds": move.freeze_seconds,
        "error": move.error,
        "finished": finished,
        "started_at": move.started_at,
        "heartbeat_at": move.heartbeat_at,
    }


def move_progress_line(move) -> str:
    """One line of ``move_progress`` for a terminal."""
    p = move_progress(move)
    eta = "" if p["eta_seconds"] is None else f", ETA {p['eta_seconds']:.0f}s"
    lag = f", {move.lag_bytes / 1e6:.1f} MB behind" if move.lag_bytes and p["phase"] == "catch_up" else ""
    return (f"[{p['phase']}] {p['percent']:.0f}%: {p['rows_copied']}/{p['rows_total']} rows, "
            f"{p['bytes_copied'] / 1e6:.1f}/{p['bytes_total'] / 1e6:.1f} MB{lag}{eta}")


def moves_in_progress() -> list:
    """Unfinished moves, oldest first, with tenant, source and target loaded."""
    from .models import Move

    return list(Move.objects.filter(finished_at__isnull=True).select_related("tenant", "source", "target")
                .order_by("started_at"))
