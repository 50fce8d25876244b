"""Reads of plans: the tenant's plan with its quotas and rate limit."""

from __future__ import annotations

from collections.abc import Callable

from django.core.cache import cache

from .models import Plan

# Bounds how long a plan edited outside the models' save (a queryset update,
# SQL) keeps its old limits; edits through save() drop the entry at once.
PLAN_CACHE_SECONDS = 30


class NoPlan(LookupError):
    """The platform's own tenant has no plan."""


def plan_cache_key(plan_id: int) -> str:
    return f"billing:plan:{plan_id}"


def plan_of(tenant) -> Plan:
    """The tenant's plan (limits, rate, code), costing no SQL on a warm cache.

    The plan id comes from the tenant row itself (``Tenant.plan``, the one
    place the plan is stored), which the host lookup already caches; the plan
    by id is cached here and shared by every tenant on it. A plan change
    saves the tenant row, which refreshes the host lookup, so no entry here
    needs dropping then.
    """
    if tenant.plan_id is None:
        raise NoPlan(f"Tenant '{tenant.slug}' has no plan.")
    key = plan_cache_key(tenant.plan_id)
    plan = cache.get(key)
    if plan is None:
        plan = Plan.objects.get(pk=tenant.plan_id)
        cache.set(key, plan, PLAN_CACHE_SECONDS)
    return plan


def plan_by_code(code: str) -> Plan | None:
    return Plan.objects.filter(code=code).first()


def plan_codes() -> list[str]:
    return list(Plan.objects.order_by("rank").values_list("code", flat=True))


def plan_history(*, tenant_id: int):
    from .models import PlanChange

    return PlanChange.objects.filter(tenant_id=tenant_id).select_related("from_plan", "to_plan")


# Quota -> what the tenant uses of it now. The counts are the domain apps'
# (documents, events, seats, keys), a tier above billing, so each app
# registers its meter in its AppConfig.ready() instead of billing importing it.
_usage_meters: dict[str, Callable[[object], int]] = {}


def usage_meter_register(quota: str, meter: Callable[[object], int]) -> None:
    """``meter(tenant)`` counts the tenant's use of ``quota`` (a tenant is active)."""
    _usage_meters[quota] = meter


def usage_summary(*, tenant) -> dict:
    """The tenant's plan and, per quota, what is used now against its limit
    (events count for the current calendar month). Cached per tenant for a
    minute; the writes that move a count drop the entry. The API's ``/usage``
    and the tenant admin's usage page both show this."""
    from apps.tenancy import tenant_cache

    def compute() -> dict:
        plan = plan_of(tenant)
        limits = {"documents": plan.max_documents, "events_per_month": plan.max_events_per_month,
                  "seats": plan.max_seats, "api_keys": plan.max_api_keys}
        missing = sorted(set(limits) - set(_usage_meters))
        if missing:
            raise LookupError(f"no usage meter registered for {', '.join(missing)}")
        return {
            "plan": plan.code,
            "rate_limit_per_minute": plan.rate_limit_per_minute,
            "quotas": {name: {"used": _usage_meters[name](tenant), "limit": limits[name]} for name in limits},
        }

    return tenant_cache.get_or_compute("usage", "summary", compute, ttl=60)
