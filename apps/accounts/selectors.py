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
    """Owners and admins of the tenant; a platform operator only under an
    active support grant for this tenant."""
    if not user.is_authenticated or not user.is_active:
        return False
    if membership_role(user=user, tenant_id=tenant_id) in ADMIN_ROLES:
        return True
    from .support import support_grant_active

    return support_grant_active(user=user, tenant_id=tenant_id) is not None


ROLE_RANK = {Membership.Role.VIEWER: 1, Membership.Role.MEMBER: 2, Membership.Role.ADMIN: 3, Membership.Role.OWNER: 4}


def role_at_least(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK.get(role, 0) >= ROLE_RANK[minimum]


def memberships_of_tenant(*, tenant_id: int):
    return Membership.objects.filter(tenant_id=tenant_id).select_related("user").order_by("user__email")


def api_key_for(*, key: str):
    """The active ApiKey for a presented key, or None."""
    from . import tokens
    from .models import ApiKey

    prefix = tokens.parse_api_key(key)
    if prefix is None:
        return None
    api_key = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
    if api_key is None or not tokens.api_key_matches(key, api_key.key_hash):
        return None
    return api_key


def api_keys_of_tenant(*, tenant_id: int):
    from .models import ApiKey

    return ApiKey.objects.filter(tenant_id=tenant_id).order_by("-created_at")


def invitations_of_tenant(*, tenant_id: int):
    from .models import Invitation

    return Invitation.objects.filter(tenant_id=tenant_id, accepted_at__isnull=True).order_by("-created_at")


def owner_emails(*, tenant_id: int) -> list[str]:
    return list(Membership.objects.filter(tenant_id=tenant_id, role=Membership.Role.OWNER)
                .values_list("user__email", flat=True).order_by("user__email"))


def user_emails(*, user_ids) -> dict[int, str]:
    """{user id: email} for the given ids (people named in audit rows and
    export requests, which keep a global user's id, not a foreign key)."""
    ids = {pk for pk in user_ids if pk is not None}
    return dict(User.objects.filter(pk__in=ids).values_list("pk", "email")) if ids else {}


def user_id_by_email(*, email: str) -> int | None:
    """The id of the account with this email (any case), or None."""
    return User.objects.filter(email=(email or "").strip().lower()).values_list("pk", flat=True).first()
