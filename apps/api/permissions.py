"""Role-based access: each view says the least role for reading and writing."""

from __future__ import annotations

from rest_framework import permissions

from apps.accounts.models import Membership
from apps.accounts.selectors import role_at_least


class TenantRole(permissions.BasePermission):
    """Reads need ``view.read_role`` (viewer), writes ``view.write_role`` (member)."""

    message = "Your role in this tenant does not allow this."

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not getattr(principal, "is_authenticated", False) or not hasattr(principal, "role"):
            return False
        if request.method in permissions.SAFE_METHODS:
            needed = getattr(view, "read_role", Membership.Role.VIEWER)
        else:
            needed = getattr(view, "write_role", Membership.Role.MEMBER)
        return role_at_least(principal.role, needed)
