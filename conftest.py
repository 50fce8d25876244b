"""Fixtures shared by every test: real PostgreSQL servers, real Redis, real tenants."""

from __future__ import annotations

import subprocess

import pytest
from django.core.cache import cache

from tests.tools import require

# The browser tests' fixtures, registered once for the whole run (see tests/browser.py).
pytest_plugins = ["tests.browser"]

# Fixtures that start processes (a browser, gunicorn): a test using one, even
# through another fixture, is in the live lane without marking it by hand.
LIVE_FIXTURES = {"browser", "page", "live_platform"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the live mark added here must count
def pytest_collection_modifyitems(items):
    """Tests using a process-starting fixture are marked live.

    Database tests may use every alias: the control plane and all shards.
    Tenant models are routed to a shard alias, which pytest-django would
    refuse (only `default` by default).
    """
    for item in items:
        if LIVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.live)
    for item in items:
        marker = item.get_closest_marker("django_db")
        uses_db = {"db", "transactional_db"} & set(getattr(item, "fixturenames", ()))
        if marker is None and not uses_db:
            continue
        transaction = bool(marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))
        transaction = transaction or "transactional_db" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.django_db(databases="__all__", transaction=transaction), append=False)


def pytest_runtest_setup(item):
    """``pytest.mark.requires(condition, reason=...)``: see tests/tools.py."""
    for mark in item.iter_markers("requires"):
        reason = mark.kwargs.get("reason") or (mark.args[1] if len(mark.args) > 1 else "a requirement is missing")
        require(mark.args[0], reason)


@pytest.fixture(autouse=True)
def _processes_only_in_the_live_lane(request):
    """A test that starts a process (a server, manage.py, any subprocess) must
    be marked live: `bin/dev test --fast` leaves those out to stay fast and
    to stay runnable without the tools they drive. One that is not marked
    fails here, naming what it started, instead of slowing the fast lane."""
    if request.node.get_closest_marker("live"):
        yield
        return
    started: list[str] = []
    execute_child = subprocess.Popen._execute_child

    def recording(self, args, *rest, **kwargs):
        started.append(args if isinstance(args, str | bytes) else " ".join(str(a) for a in args))
        return execute_child(self, args, *rest, **kwargs)

    subprocess.Popen._execute_child = recording
    try:
        yield
    finally:
        subprocess.Popen._execute_child = execute_child
    if started:
        pytest.fail(f"this test started {len(started)} process(es) but is not marked live "
                    f"(pytest.mark.live, or pytestmark in its module): {started[:3]}", pytrace=False)


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_keepdb, django_db_createdb):
    """Test databases for every alias: the control plane and all shards.

    Replaces pytest-django's fixture, which only creates the databases that
    marked tests name; tests that commit (no django_db mark) and the
    processes they start need every shard's test database too.

    Each replica alias is then pointed back at its real server. Django treats
    a replica as a mirror of its primary during tests and would send its
    queries to the primary; the test database created on the primary reaches
    the replica by streaming replication, so only host and port change.
    """
    from django.conf import settings
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        db_cfg = setup_databases(
            verbosity=request.config.option.verbose,
            interactive=False,
            keepdb=django_db_keepdb and not django_db_createdb,
            aliases=set(settings.DATABASES),
            serialized_aliases=set(),
        )
    for alias in settings.DATABASES:
        if not alias.endswith(settings.REPLICA_ALIAS_SUFFIX):
            continue
        primary = alias.removesuffix(settings.REPLICA_ALIAS_SUFFIX)
        replica_settings = settings.DATABASES[alias]
        replica_settings["NAME"] = connections[primary].settings_dict["NAME"]
        connections[alias].close()
        connections[alias].settings_dict = replica_settings
        with django_db_blocker.unblock():
            _wait_for_replica(alias)
    yield
    with django_db_blocker.unblock():
        # Aliases sharing a test database keep their own connections; close
        # them all or dropping the database fails ("being accessed by other users").
        connections.close_all()
        if not (django_db_keepdb and not django_db_createdb):
            try:
                teardown_databases(db_cfg, verbosity=request.config.option.verbose)
            except Exception as exc:  # a leftover session must not fail the run
                request.node.warn(pytest.PytestWarning(f"Error when trying to teardown test databases: {exc!r}"))


def _wait_for_replica(alias: str, timeout: float = 60.0) -> None:
    """The test database reaches a replica by streaming replication, a moment
    after the primary made it (longer on a busy machine): wait for it."""
    import time

    from django.db import OperationalError, connections

    from apps.tenancy import replicas

    deadline = time.monotonic() + timeout
    while True:
        try:
            connections[alias].ensure_connection()
            return
        except OperationalError:
            connections[alias].close()
            replicas.forget()  # a database not replicated yet is no outage: try again at once
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


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
    """Each test starts with no cached entries and full rate-limit buckets
    (this suite's key prefixes only)."""
    from django.conf import settings
    from django_redis import get_redis_connection

    def clear():
        cache.delete_pattern("*")
        try:
            client = get_redis_connection("default")
            prefix = settings.CACHES["default"]["KEY_PREFIX"]
            for pattern in (f"{settings.RATE_LIMIT_PREFIX}:*", f"{prefix}:tc:*"):
                for key in client.scan_iter(pattern):
                    client.delete(key)
        except Exception:
            pass

    clear()
    yield
    clear()


@pytest.fixture
def alpha(tenants, db):
    return tenants["alpha"]


@pytest.fixture
def beta(tenants, db):
    return tenants["beta"]


@pytest.fixture
def gamma(tenants, db):
    return tenants["gamma"]


class ApiClient:
    """A JSON client for one tenant host with one credential."""

    def __init__(self, tenant, credential: str | None, principal=None):
        from django.test import Client

        self.tenant = tenant
        self.principal = principal
        headers = {"HTTP_HOST": f"{tenant.slug}.localhost"}
        if credential:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {credential}"
        self.client = Client(**headers)

    def _send(self, method: str, path: str, body=None, **headers):
        import json

        kwargs = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        if body is not None:
            kwargs.update(data=body if isinstance(body, str | bytes) else json.dumps(body),
                          content_type="application/json")
        return getattr(self.client, method)(f"/api/v1/{path.lstrip('/')}", **kwargs)

    def get(self, path, **headers):
        return self._send("get", path, **headers)

    def post(self, path, body=None, **headers):
        return self._send("post", path, body if body is not None else {}, **headers)

    def patch(self, path, body=None, **headers):
        return self._send("patch", path, body if body is not None else {}, **headers)

    def delete(self, path, **headers):
        return self._send("delete", path, **headers)


@pytest.fixture
def api(tenants, db):
    """api(tenant, role="owner", via="token" | "key", scopes=[...]) -> ApiClient."""
    import itertools

    from apps.accounts.models import User
    from apps.accounts.services import api_key_create, membership_grant
    from apps.accounts.tokens import issue_user_token

    counter = itertools.count()

    def make(tenant, role: str = "owner", via: str = "token", scopes=("admin",)):
        user = User.objects.create_user(email=f"{role}{next(counter)}@{tenant.slug}.example", password="password-123")
        membership_grant(user=user, tenant_id=tenant.pk, role=role)
        if via == "token":
            credential = issue_user_token(user_id=user.pk, tenant_id=tenant.pk)
        else:
            credential = api_key_create(tenant_id=tenant.pk, name="test key", scopes=list(scopes), created_by=user).key
        return ApiClient(tenant, credential, principal=user)

    return make


@pytest.fixture
def outbox_inline(monkeypatch):
    """Run outbox tasks in this process when their transaction commits.

    For tests of what a task does (search results, say), not of how it
    travels: the queueing itself is tested with a real broker and real
    worker processes (tests/test_task_faults.py).
    """
    from apps.jobs import outbox
    from config.celery_app import app

    ran = []

    def run_here(message):
        ran.append(message.task_name)
        app.tasks[message.task_name].apply(args=message.args, kwargs=message.kwargs, headers=message.headers,
                                           task_id=str(message.id), throw=True)

    monkeypatch.setattr(outbox, "publish", run_here)
    return ran


@pytest.fixture(scope="session", autouse=True)
def _empty_test_queues(django_db_setup):
    """Start from empty queues on the test broker (its own Redis database)."""
    from config.celery_app import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            for queue in app.conf.task_queues:
                try:
                    queue(connection.default_channel).purge()
                except Exception:
                    pass
    except Exception:  # no broker yet: nothing to purge
        pass


@pytest.fixture
def clean_breaker():
    """Circuit breakers start closed (their state lives in Redis, across processes)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"{settings.BREAKER_NAMESPACE}:*"):
        client.delete(key)
    yield


@pytest.fixture
def smtp_sink(settings, clean_breaker):
    """A real SMTP server on loopback that the email backend of this process uses."""
    from tests.workers import SmtpSink

    sink = SmtpSink().start()
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
    # Django's test environment swaps in the in-memory backend; use real SMTP.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    yield sink
    sink.stop()
