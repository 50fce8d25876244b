"""The tenant's rows of the control plane, as export parts and back.

Secrets never leave: API keys go without their hashes, invitations without
their token hash or seed. Users are named by email (their ids are this
platform's, not the tenant's). Control-plane tables that reference the
tenant and have no exporter of their own here (a new app's) are exported by
``generic_rows``, every field but the ones whose names say they are secret.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from django.db import models

from apps.accounts.models import ApiKey, Invitation, Membership, User
from apps.billing.models import PlanChange
from apps.flags.models import Flag
from apps.tenancy.models import Domain, Tenant

from . import planes_control

SECRET_WORDS = ("secret", "hash", "token", "seed", "password", "signing")


def _iso(value) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def _email(user: User | None) -> str | None:
    return user.email if user is not None else None


def tenant_rows(tenant: Tenant) -> Iterable[dict]:
    yield {"slug": tenant.slug, "name": tenant.name, "plan": tenant.plan.code if tenant.plan else None,
           "status": tenant.status, "created_at": _iso(tenant.created_at)}


def domain_rows(tenant: Tenant) -> Iterable[dict]:
    for domain in Domain.objects.filter(tenant=tenant).order_by("domain"):
        yield {"domain": domain.domain, "is_primary": domain.is_primary}


def membership_rows(tenant: Tenant) -> Iterable[dict]:
    for m in Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__email"):
        yield {"email": m.user.email, "role": m.role, "created_at": _iso(m.created_at)}


def invitation_rows(tenant: Tenant) -> Iterable[dict]:
    for i in Invitation.objects.filter(tenant=tenant).select_related("invited_by").order_by("created_at", "email"):
        yield {"email": i.email, "role": i.role, "invited_by": _email(i.invited_by), "created_at": _iso(i.created_at),
               "expires_at": _iso(i.expires_at), "accepted_at": _iso(i.accepted_at)}


def api_key_rows(tenant: Tenant) -> Iterable[dict]:
    for k in ApiKey.objects.filter(tenant=tenant).select_related("created_by").order_by("created_at", "prefix"):
        yield {"name": k.name, "prefix": k.prefix, "scopes": k.scopes, "created_by": _email(k.created_by),
               "created_at": _iso(k.created_at), "last_used_at": _iso(k.last_used_at),
               "revoked_at": _iso(k.revoked_at)}


def plan_change_rows(tenant: Tenant) -> Iterable[dict]:
    changes = PlanChange.objects.filter(tenant=tenant).select_related("from_plan", "to_plan", "changed_by")
    for c in changes.order_by("changed_at", "id"):
        yield {"from_plan": c.from_plan.code if c.from_plan else None, "to_plan": c.to_plan.code,
               "changed_at": _iso(c.changed_at), "changed_by": _email(c.changed_by), "source": c.source}


def flag_rows(tenant: Tenant) -> Iterable[dict]:
    for key in Flag.objects.filter(tenants=tenant).order_by("key").values_list("key", flat=True):
        yield {"key": key}


def _field_value(obj, field):
    if isinstance(field, models.ForeignKey):
        related = getattr(obj, field.name)
        if isinstance(related, User):
            return related.email
        return getattr(obj, field.attname)
    return _iso(getattr(obj, field.attname))


def generic_rows(model) -> Callable[[Tenant], Iterable[dict]]:
    """Rows of another control-plane model that points at the tenant."""
    fields = [f for f in model._meta.concrete_fields
              if not any(word in f.name.lower() for word in SECRET_WORDS)
              and not (f.is_relation and f.related_model is Tenant)]
    link = planes_control.tenant_link(model)

    def rows(tenant: Tenant) -> Iterable[dict]:
        for obj in model.objects.filter(**{link: tenant.pk}).order_by("pk"):
            yield {f.name: _field_value(obj, f) for f in fields if f.name != "id"}

    return rows


EXPORTERS: dict[str, Callable[[Tenant], Iterable[dict]]] = {
    "tenant": tenant_rows,
    "domains": domain_rows,
    "memberships": membership_rows,
    "invitations": invitation_rows,
    "api_keys": api_key_rows,
    "plan_changes": plan_change_rows,
    "flags": flag_rows,
}
# Their own exporters above; or not the tenant's data (operational records,
# one-off security tokens, this app's own bookkeeping).
COVERED = {Domain, Membership, Invitation, ApiKey, PlanChange, Flag}
NOT_EXPORTED = {"tenancy.Move", "accounts.PasswordReset", "lifecycle.TenantExport"}


def exporters() -> dict[str, Callable[[Tenant], Iterable[dict]]]:
    """Every control-plane part of an export, by part name."""
    found = dict(EXPORTERS)
    for model in planes_control.models_referencing_tenant():
        if model in COVERED or model._meta.label in NOT_EXPORTED:
            continue
        found[model._meta.label_lower.replace(".", "_")] = generic_rows(model)
    return found
