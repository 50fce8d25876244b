"""Writes to the tenant registry: provisioning and lifecycle."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from . import planes, schemas
from .models import Domain, Shard, Tenant, schema_name_for_slug, validate_slug
from .placement import shard_for_new_tenant

logger = logging.getLogger(__name__)

PUBLIC_SLUG = "public"


@dataclass(frozen=True)
class ProvisionedTenant:
    tenant: Tenant
    domain: str
    created: bool
    admin_email: str
    admin_password: str | None  # set only when a new admin user was made
    seconds: float = 0.0


@dataclass(frozen=True)
class TenantOwner:
    email: str
    new_password: str | None  # set only when a new user was made


class OwnerHooks:
    """How a new tenant gets its owner: users and memberships are the
    accounts app's (a tier above the tenancy core), so accounts registers
    these in its AppConfig.ready() instead of tenancy importing accounts.

    ``grant`` runs inside the control-plane transaction that registers the
    tenant, so the owner commits or rolls back with the registry rows.
    """

    def normalize_email(self, email: str) -> str:
        raise NotImplementedError("apps.accounts registers the tenant owner hooks")

    def grant(self, *, tenant: Tenant, email: str, password: str | None) -> TenantOwner:
        raise NotImplementedError("apps.accounts registers the tenant owner hooks")


_owner_hooks = OwnerHooks()


def owner_hooks_register(hooks: OwnerHooks) -> None:
    global _owner_hooks
    _owner_hooks = hooks


def shard_register_configured() -> list[Shard]:
    """Make sure every shard alias in settings has a registry row."""
    shards = []
    for alias in planes.shard_aliases():
        name = alias.removeprefix(settings.SHARD_ALIAS_PREFIX)
        shard, _ = Shard.objects.get_or_create(alias=alias, defaults={"name": name})
        shards.append(shard)
    return shards


def shard_choose(*, name: str | None = None) -> Shard:
    """The shard for a new tenant: ``name`` if given, else the one with the
    most headroom by the placement policy (apps/tenancy/placement.py:
    weight against tenant count and data size)."""
    configured = set(planes.shard_aliases())
    if name:
        shard = Shard.objects.filter(name=name).first()
        if shard is None or shard.alias not in configured:
            raise ValidationError({"shard": f"No configured shard is named '{name}'."})
        if shard.state != Shard.State.ACTIVE:
            raise ValidationError({"shard": f"Shard '{name}' is {shard.state} and takes no new tenants."})
        return shard
    shard = shard_for_new_tenant()
    if shard is None:
        raise ValidationError({"shard": "No active shard takes new tenants."})
    return shard


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


def _canonical_slug(slug: str | None) -> str:
    """``slug`` if it is already canonical. A slug names a schema, a host and
    URLs forever; quietly lower-casing ``UPPER`` to ``upper`` would give the
    operator a tenant under a name they did not type, so it is refused with
    the canonical form named instead."""
    given = slug or ""
    canonical = given.strip().lower()
    if canonical != given:
        try:
            validate_slug(canonical)
        except ValidationError:
            return canonical  # not a slug in any case: the usual message says why
        raise ValidationError({"slug": f"'{given}' is not in canonical form; use '{canonical}' "
                                       "(lowercase letters, digits and hyphens)."})
    return canonical


def _plan_for_new_tenant(code: str | None):
    """The Plan row for ``code``, or the lowest-ranked plan when none is asked for.

    The plan catalogue is billing's; the registry only points at it
    (``Tenant.plan``). Reached through that relation instead of an import, so
    the kernel does not depend on billing's code.
    """
    plans = Tenant._meta.get_field("plan").related_model.objects.order_by("rank")
    plan = plans.filter(code=code).first() if code else plans.first()
    if plan is None:
        codes = ", ".join(plans.values_list("code", flat=True))
        raise ValidationError({"plan": f"Unknown plan '{code}'. Choose one of {codes}."})
    return plan


def _validate_new_tenant(*, slug: str, name: str, domain: str) -> None:
    errors: dict[str, str] = {}
    try:
        validate_slug(slug)
    except ValidationError as exc:
        errors["slug"] = exc.messages[0]
    if not name.strip():
        errors["name"] = "A tenant needs a name."
    elif len(name) > 200:
        errors["name"] = "A tenant name is at most 200 characters."
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
    plan: str | None = None,
    admin_password: str | None = None,
    shard: str | None = None,
) -> ProvisionedTenant:
    """Provision a tenant: registry row, schema (migrated), domain, owner.

    Idempotent: asking again for a tenant that exists with the same name and
    domain changes nothing and reports ``created=False``. A slug or domain
    held by a different tenant is a ValidationError naming the field.

    ``plan`` is a plan code (default: the lowest-ranked plan); later changes
    go through ``apps.billing.services.subscription_change_plan``.

    The tenant goes to ``shard`` (a shard name) or the least loaded active
    shard. The schema is created and migrated in a transaction on the shard
    and the registry rows are committed inside it, so a failure at any step
    (a migration error, say) leaves neither a schema nor a registry row.
    """
    slug = _canonical_slug(slug)
    domain = (domain or default_hostname(slug)).strip().lower()
    _validate_new_tenant(slug=slug, name=name, domain=domain)
    plan_row = _plan_for_new_tenant(plan)
    admin_email = _owner_hooks.normalize_email(admin_email)

    existing = Tenant.objects.filter(slug=slug).first()
    domain_row = Domain.objects.select_related("tenant").filter(domain=domain).first()
    if domain_row is not None and (existing is None or domain_row.tenant_id != existing.pk):
        raise ValidationError({"domain": f"The domain '{domain}' already belongs to tenant '{domain_row.tenant.slug}'."})
    if existing is not None:
        if existing.name != name or domain_row is None:
            raise ValidationError(
                {"slug": f"The slug '{slug}' is taken by tenant '{existing.name}' ({existing.schema_name})."}
            )
        owner = _owner_hooks.grant(tenant=existing, email=admin_email, password=admin_password)
        return ProvisionedTenant(existing, domain, False, admin_email, owner.new_password)

    started = time.perf_counter()
    target = shard_choose(name=shard)
    schema = schema_name_for_slug(slug)
    alias = target.alias
    if schemas.schema_exists(alias, schema):
        raise ValidationError(
            {"slug": f"Schema '{schema}' already exists on shard '{target.name}' without a tenant; "
                     "an operator must inspect and drop it before this slug can be used."}
        )
    registered: Tenant | None = None
    try:
        with transaction.atomic(using=alias):
            schemas.create_schema(alias, schema)
            schemas.migrate_schema(alias, schema)
            with transaction.atomic(using="default"):
                tenant = Tenant(slug=slug, name=name.strip(), plan=plan_row, schema_name=schema, shard=target)
                tenant.save()
                Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
                owner = _owner_hooks.grant(tenant=tenant, email=admin_email, password=admin_password)
            registered = tenant
    except Exception:
        if registered is not None and not transaction.get_connection("default").in_atomic_block:
            # The shard's commit failed after the registry's: undo the registry.
            Tenant.objects.filter(pk=registered.pk).delete()
        raise
    seconds = time.perf_counter() - started
    logger.info(
        "tenant provisioned",
        extra={"tenant_slug": slug, "schema": schema, "shard": target.name, "seconds": round(seconds, 3)},
    )
    return ProvisionedTenant(tenant, domain, True, admin_email, owner.new_password, seconds)


def tenant_set_status(*, tenant: Tenant, status: str) -> Tenant:
    """Suspend or reactivate a tenant; its hosts answer accordingly at once."""
    if status not in Tenant.Status.values:
        raise ValidationError({"status": f"Unknown status '{status}'."})
    if tenant.is_public:
        raise ValidationError({"status": "The platform's own tenant cannot change status."})
    tenant.status = status
    tenant.save(update_fields=["status", "updated_at"])
    return tenant
