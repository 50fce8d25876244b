"""Provisioning through the service and the management commands."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from apps.accounts.models import Membership, User
from apps.content.models import Document
from apps.tenancy import schemas, services
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Shard, Tenant
from tests.support import command_output, manage

pytestmark = pytest.mark.django_db



def test_create_tenant_makes_schema_domain_and_owner(tenants):
    output = command_output("create_tenant", "delta", "--name", "Delta", "--admin-email", "Boss@Delta.test")
    tenant = Tenant.objects.get(slug="delta")
    assert tenant.schema_name == "t_delta"
    assert schemas.schema_exists(tenant.shard.alias, "t_delta")
    assert tenant.domains.get().domain == "delta.localhost"
    owner = User.objects.get(email="boss@delta.test")
    assert Membership.objects.get(user=owner, tenant=tenant).role == "owner"
    assert "owner password (shown once)" in output
    with tenant_activated(tenant):
        assert Document.objects.count() == 0  # the tenant's tables exist


def test_create_tenant_twice_is_a_no_op(tenants):
    command_output("create_tenant", "delta", "--name", "Delta", "--admin-email", "boss@delta.test")
    output = command_output("create_tenant", "delta", "--name", "Delta", "--admin-email", "boss@delta.test")
    assert "Already present" in output
    assert "password" not in output
    assert Tenant.objects.filter(slug="delta").count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alpha", "--name", "Someone Else", "--admin-email", "x@y.test"], "slug: The slug 'alpha' is taken"),
        (["Not A Slug", "--name", "X", "--admin-email", "x@y.test"], "slug: A tenant slug is"),
        (["ab", "--name", "X", "--admin-email", "x@y.test"], "slug: A tenant slug is"),
        (["UPPER", "--name", "X", "--admin-email", "x@y.test"], "'UPPER' is not in canonical form; use 'upper'"),
        ([" delta", "--name", "X", "--admin-email", "x@y.test"], "use 'delta'"),
        (["admin", "--name", "X", "--admin-email", "x@y.test"], "reserved"),
        (["delta", "--name", "X", "--admin-email", "x@y.test", "--domain", "alpha.localhost"], "already belongs"),
        (["delta", "--name", "X", "--admin-email", "not-an-email"], "email: 'not-an-email' is not a valid"),
        (["delta", "--name", "   ", "--admin-email", "x@y.test"], "name: A tenant needs a name"),
    ],
)
def test_create_tenant_rejects_bad_input_clearly(tenants, args, message):
    before = Tenant.objects.count()
    with pytest.raises(CommandError, match=message):
        command_output("create_tenant", *args)
    assert Tenant.objects.count() == before


def test_failed_provisioning_leaves_no_half_made_tenant(tenants, monkeypatch):
    def broken_grant(**kwargs):
        raise RuntimeError("membership store unavailable")

    from apps.accounts import tenant_owner

    # The owner is granted inside the registry's transaction (the hook accounts registers).
    monkeypatch.setattr(tenant_owner, "membership_grant", broken_grant)
    for shard in Shard.objects.all():
        with pytest.raises(RuntimeError, match="membership store unavailable"):
            services.tenant_create(slug="broken", name="Broken", admin_email="b@broken.test", shard=shard.name)
        assert not Tenant.objects.filter(slug="broken").exists()
        assert not schemas.schema_exists(shard.alias, "t_broken")


def test_seed_demo_is_idempotent(tenants):
    first = command_output("seed_demo")
    second = command_output("seed_demo")
    assert "documents added: 5" in first
    assert "documents added: 0" in second
    demo = Tenant.objects.get(slug="demo")
    with tenant_activated(demo):
        assert Document.objects.count() == 5
    assert User.objects.get(email="operator@example.com").is_superuser


def test_set_tenant_status_command(tenants):
    command_output("set_tenant_status", "beta", "suspended")
    assert Tenant.objects.get(slug="beta").status == "suspended"
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        command_output("set_tenant_status", "nope", "active")
    with pytest.raises(CommandError, match="cannot change status"):
        command_output("set_tenant_status", "public", "suspended")


def test_list_tenants_command(tenants):
    output = command_output("list_tenants")
    assert "alpha" in output and "beta.localhost" in output
    assert "3 tenant(s)" in output


@pytest.mark.live
def test_command_errors_exit_non_zero_without_traceback(tenants):
    result = manage("create_tenant", "Bad Slug!", "--name", "X", "--admin-email", "x@y.test")
    assert result.returncode == 1
    assert "CommandError: slug:" in result.stderr
    assert "Traceback" not in result.stderr
