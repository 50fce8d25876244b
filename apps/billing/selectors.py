"""Reads of plans: the tenant's plan with its quotas and rate limit."""

from __future__ import annotations

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
