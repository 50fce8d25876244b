"""Usage against the plan: each quota's count now and its limit."""

from __future__ import annotations

import calendar

from django.utils import timezone

from apps.billing.selectors import NoPlan, plan_of, usage_summary

from .common import render_page

QUOTA_LABELS = {"documents": "Documents", "events_per_month": "Events this month", "seats": "Members (seats)",
                "api_keys": "Active API keys"}


def usage_page(request, *, site):
    tenant = request.tenant
    try:
        plan = plan_of(tenant)
    except NoPlan:
        plan = None
    quotas = []
    if plan is not None:
        for name, figures in usage_summary(tenant=tenant)["quotas"].items():
            used, limit = figures["used"], figures["limit"]
            quotas.append({"name": name, "label": QUOTA_LABELS.get(name, name), "used": used, "limit": limit,
                           "percent": min(100, round(100 * used / limit)) if limit else 100,
                           "over": used >= limit})
    today = timezone.now().date()
    period = (today.replace(day=1), today.replace(day=calendar.monthrange(today.year, today.month)[1]))
    return render_page(request, site, "usage.html", {"plan": plan, "quotas": quotas, "period": period},
                       title="Usage against your plan")
