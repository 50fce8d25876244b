"""Flag evaluation, cached: one Redis read per evaluation at most."""

from __future__ import annotations

import hashlib
import pickle

from apps.caching import versioned
from apps.observability import metrics

CACHE_SECONDS = 300


def definitions_version_key() -> str:
    return f"{versioned.key_prefix()}:flags:version"


def _definitions() -> dict[str, dict]:
    # Versioned like the tenant cache: a flag change that could not reach
    # Redis (outage) is never followed by the old definitions once it answers.
    found = versioned.read(definitions_version_key(), f"{versioned.key_prefix()}:flags")
    if found is not None and found.raw is not None:
        return pickle.loads(found.raw)
    from .models import Flag

    definitions = {
        flag.key: {"enabled": flag.enabled, "everyone": flag.everyone, "percentage": flag.percentage,
                   "plan_ids": _plan_ids(flag.plans), "tenants": {t.pk for t in flag.tenants.all()}}
        for flag in Flag.objects.prefetch_related("tenants")
    }
    if found is not None:
        versioned.store(found, pickle.dumps(definitions), CACHE_SECONDS)
    return definitions


def _plan_ids(codes: list[str] | None) -> set[int]:
    """Flags name plans by code; a tenant carries its plan's id (``Tenant.plan``,
    the plan's one home). Resolved when the definitions are cached, so
    evaluating a flag costs no query and no extra cache read per request.
    Plan codes do not change once made (read-only in the admin)."""
    if not codes:
        return set()
    from apps.billing.models import Plan

    return set(Plan.objects.filter(code__in=codes).values_list("pk", flat=True))


def bucket(key: str, tenant_id: int) -> int:
    """The tenant's stable position 0-99 for this flag."""
    return int(hashlib.sha256(f"{key}:{tenant_id}".encode()).hexdigest()[:8], 16) % 100


def flag_enabled(key: str, *, tenant) -> bool:
    """Is ``key`` on for ``tenant``? Unknown flags are off."""
    flag = _definitions().get(key)
    result = bool(flag) and flag["enabled"] and (
        flag["everyone"]
        or tenant.pk in flag["tenants"]
        or tenant.plan_id in flag["plan_ids"]
        or bucket(key, tenant.pk) < flag["percentage"]
    )
    metrics.flag_evaluations.labels(flag=key, result="on" if result else "off").inc()
    return result
