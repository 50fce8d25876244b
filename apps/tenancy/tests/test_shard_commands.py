"""Operator commands and admin pages about shards."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError
from django.test import Client

from apps.tenancy.models import Shard, Tenant
from apps.tenancy.selectors import rebalance_plan
from tests.support import command_output

pytestmark = pytest.mark.django_db



def test_list_shards_shows_counts_and_connections(tenants):
    output = command_output("list_shards")
    main_line = next(line for line in output.splitlines() if line.startswith("main"))
    assert "shard_main" in main_line and "active" in main_line
    assert str(Tenant.objects.filter(shard__name="main").count()) in main_line.split()


def test_tenant_location(tenants):
    output = command_output("tenant_location", "beta")
    assert "t_beta" in output and tenants["beta"].shard.alias in output
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        command_output("tenant_location", "nope")


def test_rebalance_dry_run_plans_moves_off_a_draining_shard(tenants):
    Shard.objects.filter(name="main").update(state=Shard.State.DRAINING)
    if Shard.objects.filter(state=Shard.State.ACTIVE).count() == 0:
        pytest.skip("needs a second shard")
    plan = rebalance_plan()
    assert {slug for slug, source, _ in plan if source == "main"} == set(
        Tenant.objects.filter(shard__name="main").values_list("slug", flat=True)
    )
    output = command_output("rebalance_shards", "--dry-run")
    assert "move_tenant" in output and "move(s) planned" in output


def test_rebalance_only_plans(tenants):
    with pytest.raises(CommandError, match="--dry-run"):
        command_output("rebalance_shards")


def test_rebalance_when_balanced(tenants):
    for tenant in Tenant.objects.exclude(shard=None):
        tenant.shard = Shard.objects.get(name="main")
        tenant.save()
    Shard.objects.exclude(name="main").update(state=Shard.State.READ_ONLY)
    assert "balanced" in command_output("rebalance_shards", "--dry-run")


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
