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


def usage_summary(*, tenant) -> dict:
    """The tenant's plan and, per quota, what is used now against its limit
    (events count for the current calendar month). Cached per tenant for a
    minute; the writes that move a count drop the entry. The API's ``/usage``
    and the tenant admin's usage page both show this."""
    from django.utils import timezone

    from apps.accounts.selectors import api_keys_of_tenant, memberships_of_tenant
    from apps.analytics.selectors import events_in_month
    from apps.caching import tenant_cache
    from apps.content.selectors import document_count

    def compute() -> dict:
        plan = plan_of(tenant)
        used = {
            "documents": document_count(),
            "events_per_month": events_in_month(timezone.now().date()),
            "seats": memberships_of_tenant(tenant_id=tenant.pk).count(),
            "api_keys": api_keys_of_tenant(tenant_id=tenant.pk).filter(revoked_at__isnull=True).count(),
        }
        limits = {"documents": plan.max_documents, "events_per_month": plan.max_events_per_month,
                  "seats": plan.max_seats, "api_keys": plan.max_api_keys}
        return {
            "plan": plan.code,
            "rate_limit_per_minute": plan.rate_limit_per_minute,
            "quotas": {name: {"used": used[name], "limit": limits[name]} for name in limits},
        }

    return tenant_cache.get_or_compute("usage", "summary", compute, ttl=60)
