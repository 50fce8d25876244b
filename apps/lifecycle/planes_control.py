"""Which control-plane tables reference a tenant, found rather than listed.

By the models (a foreign key or many-to-many to the tenant registry) and by
the control database's catalog (any ``tenant_id`` column, with or without a
foreign key), so that a table a new app adds is covered by the export, the
erasure and the test that lists them, without a change here.
"""

from __future__ import annotations

from django.apps import apps as django_apps
from django.db import connections

from apps.tenancy import planes
from apps.tenancy.models import Tenant


def _control_models():
    tenant_labels = planes.tenant_app_labels()
    return [m for m in django_apps.get_models(include_auto_created=True)
            if m._meta.app_label not in tenant_labels and not m._meta.proxy]


def tenant_link(model) -> str:
    """The lookup from ``model`` to a tenant id ("tenant_id", "tenants__id", ...)."""
    for field in model._meta.get_fields():
        if field.is_relation and field.related_model is Tenant and (field.many_to_many or field.many_to_one):
            return f"{field.name}__id" if field.many_to_many else field.attname
    return "tenant_id"


def _points_at_tenant(field) -> bool:
    """A foreign key or a declared many-to-many to the registry (not a reverse relation)."""
    return (field.is_relation and field.related_model is Tenant
            and (field.concrete or (field.many_to_many and not field.auto_created)))


def models_referencing_tenant() -> list:
    """Control-plane models with a foreign key or many-to-many to the tenant registry."""
    return [model for model in _control_models()
            if model is not Tenant and not model._meta.auto_created
            and any(_points_at_tenant(field) for field in model._meta.get_fields())]


def catalog_references() -> list[tuple[str, str]]:
    """(table, column) of the control database that reference a tenant: every
    foreign key to the registry, and every column named tenant_id."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype = 'f' AND c.confrelid = %s::regclass "
            "UNION SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY 1, 2",
            [Tenant._meta.db_table],
        )
        return [(table, column) for table, column in cursor.fetchall()]
