"""Reads about users and memberships, for other apps to call."""

from __future__ import annotations

from .models import ADMIN_ROLES, Membership, User


def membership_role(*, user: User, tenant_id: int) -> str | None:
    """The user's role in the tenant, or None if they are not a member."""
    if not user.is_authenticated or not user.is_active:
        return None
    return (
        Membership.objects.filter(user_id=user.pk, tenant_id=tenant_id).values_list("role", flat=True).first()
    )


def user_can_administer_tenant(*, user: User, tenant_id: int) -> bool:
    """Owners and admins of the tenant; platform superusers for support access."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return membership_role(user=user, tenant_id=tenant_id) in ADMIN_ROLES
