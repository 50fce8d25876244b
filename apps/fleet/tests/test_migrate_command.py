"""`manage.py migrate` over every tenant schema on every shard."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from apps.tenancy import schemas
from apps.tenancy.models import Tenant
from tests.support import committed_tenant


def migrate(*args: str) -> str:
    out = StringIO()
    call_command("migrate", *args, stdout=out, stderr=out)
    return out.getvalue()


def test_nothing_to_do_is_a_quick_no_op(tenants, django_db_blocker):
    with django_db_blocker.unblock():
        output = migrate("--tenants-only")
        count = Tenant.objects.exclude(schema_name="public").count()
    assert "0 migrated, 0 failed" in output
    assert f"{count} up to date" in output


def test_a_schema_behind_is_brought_up_to_date(tenants, django_db_blocker):
    with django_db_blocker.unblock(), committed_tenant("lagging") as tenant:
        alias = tenant.shard.alias
        with connections[alias].cursor() as cursor:
            cursor.execute("DROP TABLE t_lagging.audit_entry")
            cursor.execute("DELETE FROM t_lagging.django_migrations WHERE app = 'audit'")
        output = migrate("--tenants-only", "--schema", "t_lagging")
        assert "t_lagging migrated" in output and "1 migrated" in output
        assert schemas.required_tenant_migrations() <= schemas.applied_migrations_by_schema(alias, ["t_lagging"])["t_lagging"]
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM t_lagging.audit_entry")


def test_a_failing_schema_fails_the_run_and_a_rerun_resumes(tenants, django_db_blocker):
    with django_db_blocker.unblock(), committed_tenant("broken") as broken, committed_tenant("healthy") as healthy:
        for tenant in (broken, healthy):
            with connections[tenant.shard.alias].cursor() as cursor:
                cursor.execute(f"DELETE FROM {tenant.schema_name}.django_migrations WHERE app = 'audit'")
                cursor.execute(f"DROP TABLE {tenant.schema_name}.audit_entry")
        # The broken schema has a table in the way of its migration.
        with connections[broken.shard.alias].cursor() as cursor:
            cursor.execute("CREATE TABLE t_broken.audit_entry (id int)")
        with pytest.raises(CommandError, match=r"1 migrated, 1 failed.*Re-run to resume"):
            migrate("--tenants-only")
        applied = schemas.applied_migrations_by_schema(healthy.shard.alias, ["t_healthy"])["t_healthy"]
        assert ("audit", "0001_initial") in applied
        with connections[broken.shard.alias].cursor() as cursor:
            cursor.execute("DROP TABLE t_broken.audit_entry")
        output = migrate("--tenants-only")
        assert "t_broken migrated" in output and "t_healthy" not in output.split("Tenant schemas")[0]
        assert "0 failed" in output


@pytest.mark.django_db
def test_unknown_database_or_shard_is_a_clear_error(tenants):
    with pytest.raises(CommandError, match="Unknown database 'nope'"):
        migrate("--database", "nope")
    with pytest.raises(CommandError, match="Unknown shard 'atlantis'"):
        migrate("--tenants-only", "--shard", "atlantis")
