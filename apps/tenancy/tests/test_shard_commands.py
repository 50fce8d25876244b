"""Operator commands and admin pages about shards."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError
from django.test import Client

from apps.tenancy.models import Tenant
from tests.support import command_output

pytestmark = pytest.mark.django_db



def test_list_shards_shows_counts_and_connections(tenants):
    output = command_output("list_shards")
    main_line = next(line for line in output.splitlines() if line.startswith("main"))
    assert "shard_main" in main_line and "active" in main_line
    assert str(Tenant.objects.filter(shard__name="main").count()) in main_line.split()


def test_operator_admin_shows_shards_and_each_tenants_shard(tenants, django_user_model):
    django_user_model.objects.create_superuser(email="ops@platform.test", password="ops-pass")
    client = Client(HTTP_HOST="localhost")
    client.post("/admin/login/?next=/admin/", {"username": "ops@platform.test", "password": "ops-pass"})
    shards_page = client.get("/admin/tenancy/shard/").content.decode()
    assert "shard_main" in shards_page and "tenants" in shards_page.lower()
    tenants_page = client.get("/admin/tenancy/tenant/").content.decode()
    assert "alpha" in tenants_page and "main" in tenants_page


def test_tenant_command_runs_as_that_tenant_only(tenants, capsys):
    from apps.content.services import document_create
    from apps.tenancy.activation import tenant_activated

    with tenant_activated(tenants["beta"]):
        document_create(title="beta's secret")
    code = "from apps.content.models import Document; print(sorted(Document.objects.values_list('title', flat=True)))"

    def printed(*args: str) -> str:
        command_output(*args)
        return capsys.readouterr().out

    assert "beta's secret" in printed("tenant_command", "--tenant", "beta", "shell", "-c", code)
    assert "beta's secret" not in printed("tenant_command", "--tenant", "alpha", "shell", "-c", code)
    assert command_output("tenant_command", "--all", "shell", "-c", "pass").count("== ") == 3
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        command_output("tenant_command", "--tenant", "nope", "shell", "-c", "pass")
