"""Subscriptions and quota enforcement."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.api.errors import QuotaExceeded
from apps.tenancy.models import Tenant

from .models import QUOTA_FIELDS, Plan, Subscription


def subscription_for(tenant: Tenant) -> Subscription:
    """The tenant's subscription, made from its plan code on first use."""
    subscription = Subscription.objects.select_related("plan").filter(tenant_id=tenant.pk).first()
    if subscription is None:
        plan = Plan.objects.filter(code=tenant.plan).first() or Plan.objects.order_by("rank").first()
        subscription, _ = Subscription.objects.select_related("plan").get_or_create(
            tenant_id=tenant.pk, defaults={"plan": plan}
        )
    return subscription


@transaction.atomic
def subscription_change_plan(*, tenant: Tenant, plan_code: str) -> Subscription:
    plan = Plan.objects.filter(code=plan_code).first()
    if plan is None:
        raise ValidationError({"plan": f"Unknown plan '{plan_code}'."})
    subscription = subscription_for(tenant)
    subscription.plan = plan
    subscription.save(update_fields=["plan", "changed_at"])
    tenant.plan = plan.code
    tenant.save(update_fields=["plan", "updated_at"])
    from django.core.cache import cache

    from apps.ratelimit.selectors import plan_cache_key

    cache.delete(plan_cache_key(tenant.pk))
    transaction.on_commit(lambda: cache.delete(plan_cache_key(tenant.pk)))
    from apps.caching.tenant_cache import invalidate
    from apps.tenancy.activation import tenant_activated

    with tenant_activated(tenant):
        invalidate("usage")
    return subscription


def quota_enforce(*, tenant: Tenant, quota: str, used: int, adding: int = 1) -> None:
    """Raise QuotaExceeded if ``used + adding`` passes the plan's ``quota``.

    The error names the quota, the limit, and the cheapest plan that lifts it.
    """
    field = QUOTA_FIELDS[quota]
    plan = subscription_for(tenant).plan
    limit = getattr(plan, field)
    if used + adding <= limit:
        return
    upgrade = Plan.objects.filter(rank__gt=plan.rank, **{f"{field}__gte": used + adding}).order_by("rank").first()
    lift = f" The {upgrade.name} plan allows {getattr(upgrade, field):,}." if upgrade else ""
    raise QuotaExceeded(
        f"The {plan.name} plan allows {limit:,} {quota.replace('_', ' ')}; this would make {used + adding:,}.{lift}",
        quota=quota, limit=limit, used=used, requested=adding, plan=plan.code,
        upgrade_plan=upgrade.code if upgrade else None,
    )


def quota_warn_if_crossed(*, tenant: Tenant, quota: str, before: int, after: int, ratio: float) -> bool:
    """Email the owners (through the tenant outbox, in the caller's
    transaction) when usage goes from below ``ratio`` of the limit to at or above it."""
    from apps.accounts.selectors import owner_emails
    from apps.notifications.tasks import send_email
    from apps.outbox.services import tenant_outbox_enqueue

    plan = subscription_for(tenant).plan
    limit = getattr(plan, QUOTA_FIELDS[quota])
    threshold = limit * ratio
    if not (before < threshold <= after) or limit == 0:
        return False
    upgrade = Plan.objects.filter(rank__gt=plan.rank).order_by("rank").first()
    tenant_outbox_enqueue(send_email, kwargs={
        "to": owner_emails(tenant_id=tenant.pk), "template": "quota_warning",
        "context": {"tenant_name": tenant.name, "quota": quota.replace("_", " "), "used": after, "limit": limit,
                    "plan": plan.name, "percent": round(100 * after / limit),
                    "upgrade_plan": upgrade.name if upgrade else ""},
        "effect_key": f"quota-warning:{tenant.pk}:{quota}:{limit}",  # once per limit
    })
    return True
