from __future__ import annotations

from apps.billing.models import Plan
from apps.billing.selectors import PLAN_CACHE_SECONDS, plan_of
from apps.caching import local

PLANS_SCOPE = "plans"


def tenant_rate_limit(tenant) -> tuple[str, int]:
    """(plan code, requests per minute) of the tenant.

    No SQL and no round trip per request: the plan id rides on the tenant
    cached by the host lookup; the plan's limits are held once per process
    and plan (not per tenant: a thousand tenants on one plan cost one row)
    under the shared "plans" version (apps.caching.local), which the host
    lookup reads in the same round trip. A plan change saves the tenant row
    (the host lookup sees a new plan id at once); a plan edit raises the
    plans version (apps.ratelimit.signals), so new limits apply on the next
    request without a restart. An edit that sends no signal (a queryset
    update, SQL) is seen within PLAN_CACHE_SECONDS.
    """
    code, per_minute = local.shared.get_or_load(local.shared_version_key(PLANS_SCOPE), tenant.plan_id,
                                                lambda: _limits(tenant), max_age=PLAN_CACHE_SECONDS)
    return code, per_minute


def _limits(tenant) -> tuple[str, int]:
    if tenant.plan_id is None:
        plan_of(tenant)  # raises NoPlan
    # From the database, not billing's shared cache: a reader between a plan
    # edit and the drop of that entry would hold the old limits under the
    # new access version.
    code, per_minute = Plan.objects.filter(pk=tenant.plan_id).values_list("code", "rate_limit_per_minute").get()
    return code, per_minute
