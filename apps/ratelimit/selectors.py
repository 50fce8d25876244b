from __future__ import annotations

from apps.billing.selectors import plan_of


def tenant_rate_limit(tenant) -> tuple[str, int]:
    """(plan code, requests per minute) of the tenant.

    No SQL per request: the plan id rides on the tenant cached by the host
    lookup, the plan's limits come from billing's cache by plan id. A plan
    change (the tenant row) or a plan edit (the Plan row) refreshes those
    entries after commit, so new limits apply without a restart.
    """
    plan = plan_of(tenant)
    return plan.code, plan.rate_limit_per_minute
