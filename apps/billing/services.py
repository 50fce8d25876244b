"""Plan changes and quota enforcement."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.http.errors import QuotaExceeded
from apps.tenancy import tenant_cache
from apps.tenancy.models import Tenant

from .models import QUOTA_FIELDS, Plan, PlanChange
from .selectors import plan_by_code, plan_codes, plan_of


def subscription_change_plan(*, tenant: Tenant, plan_code: str, changed_by=None, source: str = "") -> Tenant:
    """Move ``tenant`` to the plan ``plan_code``: the one way a plan changes
    (operator admin, ``manage.py set_tenant_plan``, any API).

    Writes the tenant row (the plan's one home) and a history row in one
    control-plane transaction. Caches follow after that transaction commits
    (``on_commit(using="default")``), never on a shard's: the host lookup
    (which carries the plan id) through the tenant's save, the tenant's usage
    summary here. ``tenant`` is updated in place, like the other tenant
    services; copies cached for requests are refreshed by the host lookup.
    """
    plan = plan_by_code(plan_code)
    if plan is None:
        raise ValidationError({"plan": f"Unknown plan '{plan_code}'. Choose one of {', '.join(plan_codes())}."})
    if tenant.is_public:
        raise ValidationError({"plan": "The platform's own tenant has no plan."})
    with transaction.atomic(using="default"):
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        previous_id = locked.plan_id
        if previous_id != plan.pk:
            locked.plan = plan
            locked.save(update_fields=["plan", "updated_at"])
            PlanChange.objects.create(tenant=locked, from_plan_id=previous_id, to_plan=plan,
                                      changed_by=changed_by, source=source)
            _plan_changed_event(locked, previous_id, plan)
            tenant_cache.invalidate_tenant(tenant.pk, "usage", using="default")
    tenant.plan, tenant.updated_at = plan, locked.updated_at
    return tenant


def _plan_changed_event(tenant: Tenant, previous_id: int | None, plan: Plan) -> None:
    """tenant.plan_changed, recorded in this control-plane transaction (for webhooks)."""
    from apps.outbox.services import control_events_emit

    previous = Plan.objects.filter(pk=previous_id).values_list("code", flat=True).first() if previous_id else None
    control_events_emit("tenant.plan_changed", [{"object_id": tenant.pk,
                                                 "data": {"from_plan": previous, "to_plan": plan.code}}],
                        tenant_id=tenant.pk)


def quota_enforce(*, tenant: Tenant, quota: str, used: int, adding: int = 1) -> None:
    """Raise QuotaExceeded if ``used + adding`` passes the plan's ``quota``.

    The error names the quota, the limit, and the cheapest plan that lifts it.
    """
    field = QUOTA_FIELDS[quota]
    plan = plan_of(tenant)
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


def quota_warn_if_crossed(*, tenant: Tenant, quota: str, before: int, after: int, ratio: float,
                          recipients: Callable[[], list[str]]) -> bool:
    """Email ``recipients()`` (the owners, which the caller knows: billing
    sits below accounts) through the tenant outbox, in the caller's
    transaction, when usage goes from below ``ratio`` of the limit to at or
    above it. ``recipients`` is called only then."""
    from apps.notifications.tasks import send_email
    from apps.outbox.services import tenant_outbox_enqueue

    plan = plan_of(tenant)
    limit = getattr(plan, QUOTA_FIELDS[quota])
    threshold = limit * ratio
    if not (before < threshold <= after) or limit == 0:
        return False
    upgrade = Plan.objects.filter(rank__gt=plan.rank).order_by("rank").first()
    tenant_outbox_enqueue(send_email, kwargs={
        "to": recipients(), "template": "quota_warning",
        "context": {"tenant_name": tenant.name, "quota": quota.replace("_", " "), "used": after, "limit": limit,
                    "plan": plan.name, "percent": round(100 * after / limit),
                    "upgrade_plan": upgrade.name if upgrade else ""},
        "effect_key": f"quota-warning:{tenant.pk}:{quota}:{limit}",  # once per limit
    })
    from apps.outbox.services import tenant_events_emit

    tenant_events_emit("usage.quota_warning", [{"object_id": quota, "data": {
        "quota": quota, "used": after, "limit": limit, "percent": round(100 * after / limit), "plan": plan.code}}])
    return True
