"""API keys as the tenant API and the tenant admin issue and withdraw them:
the accounts services plus the plan's quota and the tenant's audit log.

Apart from services.py because the kernel (tenancy) imports the accounts
services, and must not reach the domain apps (billing, audit) through them.
"""

from __future__ import annotations

from apps.audit.services import audit_record
from apps.billing.services import quota_enforce

from . import services
from .models import ApiKey, User
from .services import CreatedApiKey


def api_key_issue(*, tenant, name: str, scopes: list[str], created_by: User | None) -> CreatedApiKey:
    """Create a key for the active ``tenant`` within its plan's quota of
    active keys, recorded in its audit log. What the API and the tenant admin
    both run; raises the quota's error or ValidationError."""
    active = ApiKey.objects.filter(tenant_id=tenant.pk, revoked_at__isnull=True).count()
    quota_enforce(tenant=tenant, quota="api_keys", used=active)
    created = services.api_key_create(tenant_id=tenant.pk, name=name, scopes=scopes, created_by=created_by)
    audit_record(action="create", object_type="api_key", object_id=created.api_key.pk,
                 changes={"name": [None, created.api_key.name], "scopes": [None, created.api_key.scopes]})
    return created


def api_key_withdraw(*, api_key: ApiKey) -> ApiKey:
    """Revoke ``api_key`` (of the active tenant) and record it in the tenant's audit log."""
    services.api_key_revoke(api_key=api_key)
    audit_record(action="update", object_type="api_key", object_id=api_key.pk,
                 changes={"revoked_at": [None, api_key.revoked_at.isoformat()]})
    return api_key
