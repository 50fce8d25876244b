"""Fixtures shared by every test: real PostgreSQL, real Redis, real tenants."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(scope="session")
def tenants(django_db_setup, django_db_blocker):
    """Two committed tenants on the test database, made once per session.

    Provisioning migrates a schema, which is too slow to repeat per test;
    tests change rows inside their own transaction (the ``db`` fixture),
    which is rolled back, so these tenants stay pristine.
    """
    from apps.tenancy.services import public_tenant_ensure, tenant_create

    with django_db_blocker.unblock():
        public_tenant_ensure()
        alpha = tenant_create(slug="alpha", name="Alpha Inc", admin_email="owner@alpha.test", admin_password="alpha-pass")
        beta = tenant_create(slug="beta", name="Beta LLC", admin_email="owner@beta.test", admin_password="beta-pass")
    return {"alpha": alpha.tenant, "beta": beta.tenant}


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with no cached entries of this suite (key prefix only)."""
    cache.delete_pattern("*")
    yield
    cache.delete_pattern("*")


@pytest.fixture
def alpha(tenants, db):
    return tenants["alpha"]


@pytest.fixture
def beta(tenants, db):
    return tenants["beta"]
