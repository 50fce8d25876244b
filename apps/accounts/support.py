"""Support access: an operator's time-boxed, audited access to one tenant.

Being a platform superuser opens the operator admin, not tenants: on a
tenant's host an operator is a stranger unless a SupportGrant for that tenant
is active. Granting needs a reason and an expiry; owners see the grants; each
request made under one is written to the tenant's audit log (actor type
``support``) by ``SupportAccessMiddleware``.
"""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.utils import timezone

from .models import Membership, SupportGrant, User

MAX_GRANT_HOURS = 72


def support_grant_active(*, user: User, tenant_id: int) -> SupportGrant | None:
    """The operator's active grant for the tenant, or None."""
    if not user.is_authenticated or not user.is_active or not user.is_superuser:
        return None
    return (
        SupportGrant.objects.filter(operator_id=user.pk, tenant_id=tenant_id, revoked_at__isnull=True,
                                    expires_at__gt=timezone.now())
        .order_by("-expires_at")
        .first()
    )


def support_grants_of_tenant(*, tenant_id: int):
    return SupportGrant.objects.filter(tenant_id=tenant_id).select_related("operator", "granted_by")


def support_grant_validate(*, tenant_id: int, operator: User, reason: str, hours: float) -> None:
    errors = {}
    if not operator.is_superuser or not operator.is_active:
        errors["operator"] = f"{operator.email} is not an active platform operator."
    elif Membership.objects.filter(user=operator, tenant_id=tenant_id).exists():
        errors["operator"] = f"{operator.email} is a member of this tenant already; support access is for strangers."
    if not (reason or "").strip():
        errors["reason"] = "Say why support access is needed; the tenant's owners will see it."
    if not 0 < hours <= MAX_GRANT_HOURS:
        errors["hours"] = f"Between a few minutes and {MAX_GRANT_HOURS} hours."
    if errors:
        raise ValidationError(errors)


def support_grant_create(*, tenant_id: int, operator: User, reason: str, hours: float,
                         granted_by: User | None = None) -> SupportGrant:
    """Open the tenant to ``operator`` for ``hours``, with a reason the owners
    see, in the grant list and in the tenant's audit log."""
    from apps.audit.services import audit_record

    from .services import tenant_audited

    support_grant_validate(tenant_id=tenant_id, operator=operator, reason=reason, hours=hours)
    with tenant_audited(tenant_id):
        grant = SupportGrant.objects.create(
            tenant_id=tenant_id, operator=operator, reason=reason.strip(), granted_by=granted_by,
            expires_at=timezone.now() + dt.timedelta(hours=hours),
        )
        audit_record(action="create", object_type="support_grant", object_id=grant.pk,
                     changes={"operator_id": [None, operator.pk], "reason": [None, grant.reason],
                              "expires_at": [None, grant.expires_at.isoformat()]})
    return grant


def support_grant_revoke(*, grant: SupportGrant) -> None:
    from apps.audit.services import audit_record

    from .services import tenant_audited

    with tenant_audited(grant.tenant_id):
        if SupportGrant.objects.filter(pk=grant.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            audit_record(action="update", object_type="support_grant", object_id=grant.pk,
                         changes={"revoked": [False, True]})
