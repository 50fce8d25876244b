"""Fixtures shared by every test: real PostgreSQL servers, real Redis, real tenants."""

from __future__ import annotations

import pytest
from django.core.cache import cache


def pytest_collection_modifyitems(items):
    """Database tests may use every alias: the control plane and all shards.

    Tenant models are routed to a shard alias, which pytest-django would
    refuse (only `default` by default).
    """
    for item in items:
        marker = item.get_closest_marker("django_db")
        uses_db = {"db", "transactional_db"} & set(getattr(item, "fixturenames", ()))
        if marker is None and not uses_db:
            continue
        transaction = bool(marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))
        transaction = transaction or "transactional_db" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.django_db(databases="__all__", transaction=transaction), append=False)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Point each replica alias at its real server, reading the test database.

    Django treats a replica as a mirror of its primary during tests and would
    send its queries to the primary. The test database created on the primary
    reaches the replica by streaming replication, so only the host and port
    need to be the replica's again.
    """
    from django.conf import settings
    from django.db import connections

    for alias in settings.DATABASES:
        if not alias.endswith(settings.REPLICA_ALIAS_SUFFIX):
            continue
        primary = alias.removesuffix(settings.REPLICA_ALIAS_SUFFIX)
        replica_settings = settings.DATABASES[alias]
        replica_settings["NAME"] = connections[primary].settings_dict["NAME"]
        connections[alias].close()
        connections[alias].settings_dict = replica_settings
    yield
    # Aliases sharing a test database keep their own connections; close them
    # all or dropping the database fails ("being accessed by other users").
    connections.close_all()


@pytest.fixture(scope="session")
def tenants(django_db_setup, django_db_blocker):
    """Committed tenants on the test databases, made once per session.

    alpha and gamma share shard `main`; beta is on shard `b` (another server,
    with a replica) when that shard is configured. Provisioning migrates a
    schema, which is too slow to repeat per test; tests change rows inside
    their own transactions (the ``db`` fixture), which are rolled back.
    """
    from apps.tenancy import planes
    from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create

    other_shard = "b" if "shard_b" in planes.shard_aliases() else "main"
    with django_db_blocker.unblock():
        shard_register_configured()
        public_tenant_ensure()
        made = {}
        for slug, name, shard in [("alpha", "Alpha Inc", "main"), ("beta", "Beta LLC", other_shard),
                                  ("gamma", "Gamma Co", "main")]:
            made[slug] = tenant_create(
                slug=slug, name=name, admin_email=f"owner@{slug}.test", admin_password=f"{slug}-pass", shard=shard
            ).tenant
    return made


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


@pytest.fixture
def gamma(tenants, db):
    return tenants["gamma"]
