"""Writes to the tenant registry: provisioning and lifecycle."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.models import Membership
from apps.accounts.services import membership_grant, normalize_email, user_ensure

from .models import Domain, Tenant, schema_name_for_slug, validate_slug

logger = logging.getLogger(__name__)

PUBLIC_SLUG = "public"


@dataclass(frozen=True)
class ProvisionedTenant:
    tenant: Tenant
    domain: str
    created: bool
    admin_email: str
    admin_password: str | None  # set only when a new admin user was made


def default_hostname(slug: str) -> str:
    return f"{slug}.{settings.PLATFORM_DOMAIN}"


def public_tenant_ensure() -> Tenant:
    """The control-plane tenant serving the operators' host (PLATFORM_DOMAIN)."""
    tenant = Tenant.objects.filter(schema_name="public").first()
    if tenant is None:
        tenant = Tenant(schema_name="public", slug=PUBLIC_SLUG, name="Platform")
        tenant.save()
    hostname = settings.PLATFORM_DOMAIN.lower()
    Domain.objects.get_or_create(domain=hostname, defaults={"tenant": tenant, "is_primary": True})
    return tenant


def _validate_new_tenant(*, slug: str, name: str, domain: str, plan: str) -> None:
    errors: dict[str, str] = {}
    try:
        validate_slug(slug)
    except ValidationError as exc:
        errors["slug"] = exc.messages[0]
    if not name.strip():
        errors["name"] = "A tenant needs a name."
    elif len(name) > 200:
        errors["name"] = "A tenant name is at most 200 characters."
    if plan not in Tenant.Plan.values:
        errors["plan"] = f"Unknown plan '{plan}'. Choose one of {', '.join(Tenant.Plan.values)}."
    if not domain or len(domain) > 253 or " " in domain:
        errors["domain"] = f"'{domain}' is not a valid host name."
    if errors:
        raise ValidationError(errors)


def tenant_create(
    *,
    slug: str,
    name: str,
    admin_email: str,
    domain: str | None = None,
    plan: str = Tenant.Plan.FREE,
    admin_password: str | None = None,
) -> ProvisionedTenant:
    """Provision a tenant: registry row, schema (migrated), domain, owner.

    Idempotent: asking again for a tenant that exists with the same name and
    domain changes nothing and reports ``created=False``. A slug or domain
    held by a different tenant is a ValidationError naming the field. The
    whole provisioning is one transaction, so a failure (a migration error,
    say) leaves neither a registry row nor a schema behind.
    """
    slug = (slug or "").strip().lower()
    domain = (domain or default_hostname(slug)).strip().lower()
    _validate_new_tenant(slug=slug, name=name, domain=domain, plan=plan)
    admin_email = normalize_email(admin_email)

    existing = Tenant.objects.filter(slug=slug).first()
    domain_row = Domain.objects.select_related("tenant").filter(domain=domain).first()
    if domain_row is not None and (existing is None or domain_row.tenant_id != existing.pk):
        raise ValidationError({"domain": f"The domain '{domain}' already belongs to tenant '{domain_row.tenant.slug}'."})
    if existing is not None:
        if existing.name != name or domain_row is None:
            raise ValidationError(
                {"slug": f"The slug '{slug}' is taken by tenant '{existing.name}' ({existing.schema_name})."}
            )
        owner = user_ensure(email=admin_email, password=admin_password)
        if not Membership.objects.filter(user=owner.user, tenant=existing).exists():
            membership_grant(user=owner.user, tenant_id=existing.pk, role=Membership.Role.OWNER)
        return ProvisionedTenant(existing, domain, False, admin_email, owner.password if owner.created else None)

    with transaction.atomic():
        tenant = Tenant(slug=slug, name=name.strip(), plan=plan, schema_name=schema_name_for_slug(slug))
        tenant.save(verbosity=0)
        Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
        owner = user_ensure(email=admin_email, password=admin_password)
        membership_grant(user=owner.user, tenant_id=tenant.pk, role=Membership.Role.OWNER)
    logger.info("tenant provisioned", extra={"tenant_slug": slug, "schema": tenant.schema_name})
    return ProvisionedTenant(tenant, domain, True, admin_email, owner.password if owner.created else None)


def tenant_set_status(*, tenant: Tenant, status: str) -> Tenant:
    """Suspend or reactivate a tenant; its hosts answer accordingly at once."""
    if status not in Tenant.Status.values:
        raise ValidationError({"status": f"Unknown status '{status}'."})
    if tenant.is_public:
        raise ValidationError({"status": "The platform's own tenant cannot change status."})
    tenant.status = status
    tenant.save(update_fields=["status", "updated_at"])
    return tenant
