"""The one database router of the platform."""

from __future__ import annotations

from django.conf import settings
from django.db import connections

from . import planes
from .context import NoActiveTenant, pin_primary, primary_pinned, require_active_tenant, wrote_var


def tenant_write_alias(tenant=None) -> str:
    """The primary alias of the (active) tenant's shard."""
    tenant = tenant or require_active_tenant()
    if tenant.shard is None:
        raise NoActiveTenant(f"Tenant '{tenant.slug}' has no shard; the platform tenant holds no tenant data.")
    return tenant.shard.alias


def tenant_read_alias(tenant=None) -> str:
    """The replica of the tenant's shard when one is configured and safe."""
    alias = tenant_write_alias(tenant)
    replica = planes.replica_alias(alias)
    if replica is None or not settings.REPLICA_READS or primary_pinned():
        return alias
    if connections[alias].in_atomic_block:
        # A read inside a transaction on the primary belongs to it: a check
        # that guards a write (a quota count) must see the transaction's own
        # rows and locks, not an older snapshot on another server.
        return alias
    from .replicas import presumed_down, replica_fit

    if presumed_down(alias):
        # Possibly stale data beats none; a client that must see its own
        # writes is pinned above and gets its 503 from the primary instead.
        return replica
    return replica if replica_fit(alias, replica) else alias


class ShardRouter:
    """Control-plane models -> ``default``; tenant models -> the shard of the
    active tenant (reads on its replica unless this client wrote within
    READ_YOUR_WRITES_SECONDS or the read is inside a transaction on the
    primary; while the primary is down, other reads stay on the replica).
    With no tenant active a tenant model raises NoActiveTenant: falling back
    to any schema would leak data."""

    def db_for_read(self, model, **hints):
        if planes.plane_of(model) == planes.CONTROL:
            return "default"
        return tenant_read_alias()

    def db_for_write(self, model, **hints):
        if planes.plane_of(model) == planes.CONTROL:
            return "default"
        alias = tenant_write_alias()
        wrote_var.set(True)
        pin_primary(settings.READ_YOUR_WRITES_SECONDS)
        return alias

    def allow_relation(self, obj1, obj2, **hints):
        # No foreign keys across planes: they would span databases.
        return planes.plane_of(obj1) == planes.plane_of(obj2)

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == "django_cache":
            return db == "default"
        plane = planes.plane_of_app(app_label)
        if db == "default":
            return plane == planes.CONTROL and connections[db].schema_name == "public"
        if planes.is_shard_alias(db):
            # Tenant tables in tenant schemas; nothing in a shard's public schema.
            return plane == planes.TENANT and connections[db].schema_name != "public"
        return False  # replicas and anything unknown
