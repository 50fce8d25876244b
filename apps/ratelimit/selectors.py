from __future__ import annotations

from django.core.cache import cache

PLAN_CACHE_SECONDS = 30


def plan_cache_key(tenant_id: int) -> str:
    return f"ratelimit:plan:{tenant_id}"


def tenant_rate_limit(tenant) -> tuple[str, int]:
    """(plan code, requests per minute) of the tenant, cached briefly; a plan
    change deletes the entry, so new limits apply without a restart."""
    key = plan_cache_key(tenant.pk)
    cached = cache.get(key)
    if cached is not None:
        return cached
    from apps.billing.services import subscription_for

    plan = subscription_for(tenant).plan
    value = (plan.code, plan.rate_limit_per_minute)
    cache.set(key, value, PLAN_CACHE_SECONDS)
    return value
