"""Tenant schemas on shard databases: create, migrate, drop, inspect.

django-tenants creates and migrates schemas on its one TENANT_DB_ALIAS only;
these functions do the same on any shard alias, reusing its connection
wrapper (``set_schema``) and Django's own migrate command.
"""

from __future__ import annotations

import io

from django.core.management import call_command
from django.core.management.commands.migrate import Command as MigrateCommand
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django_tenants.postgresql_backend.base import _check_schema_name
from django_tenants.utils import quote_schema_name

from . import planes
from .models import Tenant


def schema_exists(alias: str, schema: str) -> bool:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        return cursor.fetchone() is not None


def existing_schemas(alias: str, candidates: list[str]) -> set[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", [candidates])
        return {row[0] for row in cursor.fetchall()}


def tenant_schemas_by_alias(aliases: list[str], only_schema: str | None = None) -> dict[str, list[str]]:
    by_alias: dict[str, list[str]] = {alias: [] for alias in aliases}
    tenants = Tenant.objects.filter(shard__alias__in=aliases).exclude(schema_name="public")
    if only_schema:
        tenants = tenants.filter(schema_name=only_schema)
    for schema, alias in tenants.values_list("schema_name", "shard__alias").order_by("schema_name"):
        by_alias[alias].append(schema)
    return by_alias


def create_schema(alias: str, schema: str) -> None:
    _check_schema_name(schema)
    with connections[alias].cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {quote_schema_name(schema)}")


def drop_schema(alias: str, schema: str) -> None:
    _check_schema_name(schema)
    if schema == "public":
        raise ValueError("refusing to drop the public schema")
    with connections[alias].cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {quote_schema_name(schema)} CASCADE")


def migrate_schema(alias: str, schema: str, *, verbosity: int = 0) -> str:
    """Bring one tenant schema on one shard to the current migration state."""
    connection = connections[alias]
    previous = connection.tenant
    # The migration ledger must be created in the tenant schema itself, not
    # found through the search path in public (as django-tenants does too).
    connection.set_schema(schema, include_public=False)
    MigrationRecorder(connection).ensure_schema()
    connection.set_schema(schema)
    out = io.StringIO()
    try:
        # Django's own migrate, not django-tenants' override: the router's
        # allow_migrate (tenant apps, non-public schema) picks the tables.
        call_command(
            MigrateCommand(), database=alias, interactive=False, verbosity=verbosity,
            skip_checks=True, stdout=out, stderr=out,
        )
    finally:
        connection.set_tenant(previous)
    return out.getvalue()


def required_tenant_migrations() -> set[tuple[str, str]]:
    """Every (app, migration) a tenant schema must have applied, from disk."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    labels = planes.tenant_app_labels()
    return {key for key in loader.disk_migrations if key[0] in labels}


def applied_migrations_by_schema(alias: str, schemas: list[str]) -> dict[str, set[tuple[str, str]]]:
    """Applied tenant migrations of many schemas in one round trip."""
    result: dict[str, set[tuple[str, str]]] = {schema: set() for schema in schemas}
    if not schemas:
        return result
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = 'django_migrations' AND table_schema = ANY(%s)",
            [schemas],
        )
        with_ledger = [row[0] for row in cursor.fetchall()]
        if not with_ledger:
            return result
        union = " UNION ALL ".join(
            f"SELECT %s, app, name FROM {quote_schema_name(s)}.django_migrations" for s in with_ledger
        )
        cursor.execute(union, with_ledger)
        for schema, app, name in cursor.fetchall():
            result[schema].add((app, name))
    return result
