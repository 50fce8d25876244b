"""Operator commands about tenant placement: where a tenant lives, rebalancing."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from apps.tenancy.models import Shard, Tenant
from apps.tenancy.placement import rebalance_plan
from tests.support import command_output
from tests.tools import require

pytestmark = pytest.mark.django_db


def test_tenant_location(tenants):
    output = command_output("tenant_location", "beta")
    assert "t_beta" in output and tenants["beta"].shard.alias in output
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        command_output("tenant_location", "nope")


def test_rebalance_dry_run_plans_moves_off_a_draining_shard(tenants):
    Shard.objects.filter(name="main").update(state=Shard.State.DRAINING)
    require(Shard.objects.filter(state=Shard.State.ACTIVE).exists(), "needs a second shard")
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
