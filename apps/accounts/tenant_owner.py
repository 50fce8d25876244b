"""The owner of a newly provisioned tenant, supplied to the tenancy core.

Registered in AccountsConfig.ready(): provisioning (apps.tenancy.services)
calls these inside its control-plane transaction, without importing accounts.
"""

from __future__ import annotations

from apps.tenancy.models import Tenant
from apps.tenancy.services import OwnerHooks, TenantOwner

from .models import Membership
from .services import membership_grant, normalize_email, user_ensure


class AccountOwnerHooks(OwnerHooks):
    def normalize_email(self, email: str) -> str:
        return normalize_email(email)

    def grant(self, *, tenant: Tenant, email: str, password: str | None) -> TenantOwner:
        """The user with this email (made when missing) owns the tenant; an
        existing member keeps the role it has."""
        owner = user_ensure(email=email, password=password)
        if not Membership.objects.filter(user=owner.user, tenant=tenant).exists():
            membership_grant(user=owner.user, tenant_id=tenant.pk, role=Membership.Role.OWNER)
        return TenantOwner(email=owner.user.email, new_password=owner.password if owner.created else None)
