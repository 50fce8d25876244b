"""Many tenant schemas, cheaply, and migrations that exist only for a test.

Cloning: one tenant is provisioned the normal way (migrated); its schema's
DDL is dumped once with pg_dump and replayed under other names, with its
migration ledger copied, which is what a migrated schema is. About 20 times
faster than migrating each schema, so a thousand schemas take a minute.

Test-only migrations: a throwaway app (package + migrations + a settings
module that adds it to TENANT_APPS) written into a temporary directory and
put on PYTHONPATH of a `manage.py migrate` subprocess. Nothing lands in
apps/, and the platform serving traffic runs without it.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import psycopg
from django.db.migrations.loader import MigrationLoader
from django_tenants.utils import quote_schema_name

from tests.support import test_database_url as database_url

APP = "fleetcheck"


def pg_dump_binary() -> str:
    # The client must be at least as new as every server; pgserver's
    # binaries are the newest on this machine (the embedded shard runs them).
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / "pg_dump")


def schema_ddl(alias: str, schema: str) -> str:
    dump = subprocess.run(
        [pg_dump_binary(), "--schema-only", "--no-owner", "--no-privileges", f"--schema={schema}",
         database_url(alias)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    # psql meta-commands (\restrict in recent pg_dump) mean nothing to a driver.
    return "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))


def clone_schemas(alias: str, template: str, names: list[str], *, batch: int = 25) -> None:
    """Create ``names`` on ``alias`` as copies of the migrated ``template`` schema."""
    ddl = schema_ddl(alias, template)
    pattern = re.compile(rf"\b{re.escape(template)}\b")
    with psycopg.connect(database_url(alias), autocommit=False) as conn:
        for start in range(0, len(names), batch):
            for name in names[start:start + batch]:
                conn.execute(pattern.sub(name, ddl))
                conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
                conn.execute(
                    f"INSERT INTO {quote_schema_name(name)}.django_migrations (app, name, applied) "
                    f"SELECT app, name, applied FROM {quote_schema_name(template)}.django_migrations"
                )
            conn.commit()


def clone_tenants(template, slugs: list[str]) -> list:
    """Registry rows and cloned schemas for ``slugs``, on the template tenant's shard."""
    from apps.tenancy.models import Domain, Tenant, schema_name_for_slug
    from apps.tenancy.services import default_hostname

    existing = set(Tenant.objects.filter(slug__in=slugs).values_list("slug", flat=True))
    slugs = [slug for slug in slugs if slug not in existing]
    clone_schemas(template.shard.alias, template.schema_name, [schema_name_for_slug(s) for s in slugs])
    tenants = Tenant.objects.bulk_create(
        Tenant(slug=slug, name=slug, plan_id=template.plan_id, schema_name=schema_name_for_slug(slug),
               shard_id=template.shard_id) for slug in slugs
    )
    Domain.objects.bulk_create(Domain(domain=default_hostname(t.slug), tenant=t, is_primary=True) for t in tenants)
    return tenants


def drop_tenants(tenants) -> None:
    from apps.tenancy import schemas
    from apps.tenancy.models import Tenant

    for tenant in tenants:
        schemas.drop_schema(tenant.shard.alias, tenant.schema_name)
    Tenant.objects.filter(pk__in=[t.pk for t in tenants]).delete()


def leaf_migration(app_label: str) -> tuple[str, str]:
    return MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes(app_label)[0]


def write_migration_app(directory: Path, migrations: dict[str, str], *, base_settings: str,
                        non_atomic: frozenset[str] = frozenset()) -> dict[str, str]:
    """A throwaway tenant app with ``migrations`` ({name: operations source};
    those named in ``non_atomic`` get ``atomic = False``); returns the
    environment that makes a subprocess load it."""
    package = directory / APP
    (package / "migrations").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "migrations" / "__init__.py").write_text("")
    previous = leaf_migration("content")
    for name, operations in migrations.items():
        (package / "migrations" / f"{name}.py").write_text(textwrap.dedent(f"""\
            from django.db import migrations


            class Migration(migrations.Migration):
                atomic = {name not in non_atomic}
                dependencies = [{previous!r}]
                operations = [{operations}]
            """))
        previous = (APP, name)
    # Importing the `config` package loads the Celery app, which reads the
    # settings while this module is still half imported: point that nested
    # read at the base module, then back here.
    (directory / "fleet_settings.py").write_text(textwrap.dedent(f"""\
        import os

        os.environ["DJANGO_SETTINGS_MODULE"] = {base_settings!r}
        from {base_settings} import *  # noqa: E402,F401,F403
        from {base_settings} import INSTALLED_APPS, TENANT_APPS  # noqa: E402

        os.environ["DJANGO_SETTINGS_MODULE"] = "fleet_settings"
        INSTALLED_APPS = [*INSTALLED_APPS, {APP!r}]
        TENANT_APPS = [*TENANT_APPS, {APP!r}]
        """))
    return {"PYTHONPATH": str(directory), "DJANGO_SETTINGS_MODULE": "fleet_settings"}


def add_column(table: str, column: str, *, sleep: float = 0.0) -> str:
    """RunSQL operations adding a nullable column (the expand step) to a tenant table."""
    ops = [f"migrations.RunSQL('ALTER TABLE {table} ADD COLUMN {column} text', "
           f"'ALTER TABLE {table} DROP COLUMN {column}')"]
    if sleep:
        ops.append(f"migrations.RunSQL('SELECT pg_sleep({sleep})', migrations.RunSQL.noop)")
    return ", ".join(ops)



def forget_migration_app(aliases: list[str], *, table: str = "content_document", prefix: str = "fleet_") -> None:
    """Undo the throwaway app everywhere: its columns and its ledger rows, in
    every schema of every shard (one statement per shard)."""
    assert re.fullmatch(r"[a-z_]+", table + prefix)
    forget = f"""
    DO $$
    DECLARE s text; c text;
    BEGIN
      FOR s, c IN SELECT table_schema, column_name FROM information_schema.columns
                  WHERE table_name = '{table}' AND column_name LIKE '{prefix}%' LOOP
        EXECUTE format('ALTER TABLE %I.%I DROP COLUMN %I', s, '{table}', c);
      END LOOP;
      FOR s IN SELECT table_schema FROM information_schema.tables WHERE table_name = 'django_migrations' LOOP
        EXECUTE format('DELETE FROM %I.django_migrations WHERE app = %L', s, '{APP}');
      END LOOP;
    END $$;
    """
    for alias in aliases:
        with psycopg.connect(database_url(alias), autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(forget)
