"""Flag evaluation, cached: one Redis read per request at most."""

from __future__ import annotations

import hashlib

from django.core.cache import cache

from apps.observability import metrics

CACHE_KEY = "flags:all"
CACHE_SECONDS = 300


def _definitions() -> dict[str, dict]:
    definitions = cache.get(CACHE_KEY)
    if definitions is None:
        from .models import Flag

        definitions = {
            flag.key: {"enabled": flag.enabled, "everyone": flag.everyone, "percentage": flag.percentage,
                       "plans": list(flag.plans or []), "tenants": {t.pk for t in flag.tenants.all()}}
            for flag in Flag.objects.prefetch_related("tenants")
        }
        cache.set(CACHE_KEY, definitions, CACHE_SECONDS)
    return definitions


def bucket(key: str, tenant_id: int) -> int:
    """The tenant's stable position 0-99 for this flag."""
    return int(hashlib.sha256(f"{key}:{tenant_id}".encode()).hexdigest()[:8], 16) % 100


def flag_enabled(key: str, *, tenant) -> bool:
    """Is ``key`` on for ``tenant``? Unknown flags are off."""
    flag = _definitions().get(key)
    result = bool(flag) and flag["enabled"] and (
        flag["everyone"]
        or tenant.pk in flag["tenants"]
        or tenant.plan in flag["plans"]
        or bucket(key, tenant.pk) < flag["percentage"]
    )
    metrics.flag_evaluations.labels(flag=key, result="on" if result else "off").inc()
    return result
