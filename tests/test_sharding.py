"""Sharding across real PostgreSQL servers: placement, routing, replicas."""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.content.models import Document
from apps.content.services import document_create
from apps.tenancy import planes
from apps.tenancy.activation import tenant_activated
from apps.tenancy.context import NoActiveTenant
from apps.tenancy.models import Shard, Tenant
from apps.tenancy.services import shard_choose
from tests.support import committed_tenant, temporary_shard
from tests.tools import second_shard_with_replica

needs_two_servers = pytest.mark.requires(
    second_shard_with_replica(),
    reason="needs shard b on a second server with a replica (bin/dev test sets this up)",
)


def server_of(alias: str) -> tuple[str, int]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT inet_server_port(), current_database()")
        port, _ = cursor.fetchone()
    return connections[alias].settings_dict["HOST"], port


@pytest.mark.django_db
def test_tenant_model_without_an_active_tenant_fails_closed(tenants):
    with pytest.raises(NoActiveTenant, match="no tenant active"):
        list(Document.objects.all())
    with pytest.raises(NoActiveTenant):
        Document.objects.create(title="nowhere")


@pytest.mark.django_db
def test_control_plane_models_stay_on_default(tenants):
    assert Tenant.objects.all().db == "default"
    with tenant_activated(tenants["beta"]):
        assert Tenant.objects.all().db == "default"
        assert Document.objects.all().db == "shard_b" if "shard_b" in planes.shard_aliases() else "shard_main"


@needs_two_servers
@pytest.mark.django_db
def test_each_tenants_rows_are_physically_on_its_own_shard_only(alpha, beta):
    assert server_of("shard_main") != server_of("shard_b")
    with tenant_activated(alpha):
        document_create(title="alpha row")
    with tenant_activated(beta):
        document_create(title="beta row")

    def titles(alias: str, schema: str) -> list[str]:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
            if cursor.fetchone() is None:
                return []
            cursor.execute(f"SELECT title FROM {schema}.content_document")
            return [row[0] for row in cursor.fetchall()]

    assert titles("shard_main", "t_alpha") == ["alpha row"]
    assert titles("shard_b", "t_beta") == ["beta row"]
    assert titles("shard_main", "t_beta") == []  # no beta schema on the main server at all
    assert titles("shard_b", "t_alpha") == []


@pytest.mark.django_db
def test_same_shard_tenants_are_isolated(alpha, gamma):
    assert alpha.shard_id == gamma.shard_id
    with tenant_activated(alpha):
        doc = document_create(title="alpha only")
    with tenant_activated(gamma):
        assert not Document.objects.filter(pk=doc.pk).exists()
        assert Document.objects.filter(pk=doc.pk).update(title="x") == 0


@pytest.mark.django_db
def test_activation_is_reset_after_a_request(client, beta):
    client.get("/", HTTP_HOST="beta.localhost")
    alias = beta.shard.alias
    assert connections[alias].schema_name == "public"
    with pytest.raises(NoActiveTenant):
        Document.objects.count()


@pytest.mark.django_db
def test_placement_picks_the_least_loaded_active_shard_by_weight(tenants):
    counts = {s.name: s.tenants.count() for s in Shard.objects.all()}
    chosen = shard_choose()
    least = min(counts, key=lambda n: ((counts[n] + 1) / Shard.objects.get(name=n).weight, n))
    assert chosen.name == least
    Shard.objects.filter(name=chosen.name).update(state=Shard.State.DRAINING)
    assert shard_choose().name != chosen.name or len(counts) == 1


@pytest.mark.django_db
def test_placement_on_a_named_shard_and_bad_names(tenants):
    from django.core.exceptions import ValidationError

    assert shard_choose(name="main").name == "main"
    with pytest.raises(ValidationError, match="No configured shard is named 'nowhere'"):
        shard_choose(name="nowhere")
    Shard.objects.filter(name="main").update(state=Shard.State.READ_ONLY)
    with pytest.raises(ValidationError, match="takes no new tenants"):
        shard_choose(name="main")


# --- replicas ---------------------------------------------------------------


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@needs_two_servers
def test_reads_use_the_replica_and_writes_never_do(tenants, django_db_blocker, settings):
    settings.REPLICA_READS = True
    beta = tenants["beta"]
    with django_db_blocker.unblock():
        with tenant_activated(beta):
            doc = document_create(title="replicated")
            assert Document.objects.all().db == "shard_b"  # pinned: this unit just wrote
        try:
            with tenant_activated(beta):  # a fresh unit of work, no recent write
                assert Document.objects.all().db == "shard_b_replica"
                wait_until(lambda: Document.objects.filter(pk=doc.pk).exists())
                replica_port = server_of("shard_b_replica")[1]
                with CaptureQueriesContext(connections["shard_b_replica"]) as on_replica, \
                        CaptureQueriesContext(connections["shard_b"]) as on_primary:
                    assert Document.objects.get(pk=doc.pk).title == "replicated"
                    Document.objects.filter(pk=doc.pk).update(title="updated on primary")
                assert any("SELECT" in q["sql"] for q in on_replica.captured_queries)
                assert not any("UPDATE" in q["sql"] for q in on_replica.captured_queries)
                assert any("UPDATE" in q["sql"] for q in on_primary.captured_queries)
                assert replica_port != server_of("shard_b")[1]
                # After the write, this unit reads its own write from the primary.
                assert Document.objects.all().db == "shard_b"
                assert Document.objects.get(pk=doc.pk).title == "updated on primary"
        finally:
            with tenant_activated(beta):
                Document.objects.filter(pk=doc.pk).delete()


@needs_two_servers
def test_read_your_writes_across_requests_of_the_same_client(tenants, django_db_blocker, settings):
    settings.REPLICA_READS = True
    beta = tenants["beta"]
    with django_db_blocker.unblock():
        client = Client(HTTP_HOST="beta.localhost")
        assert client.post("/admin/login/?next=/admin/", {"username": "owner@beta.test", "password": "beta-pass"}).status_code == 302
        try:
            with CaptureQueriesContext(connections["shard_b"]) as on_primary, \
                    CaptureQueriesContext(connections["shard_b_replica"]) as on_replica:
                client.post("/admin/content/document/add/", {"title": "just written", "body": "", "status": "draft"})
                page = client.get("/admin/content/document/")
            assert b"just written" in page.content  # no replication lag can hide it
            reads = [q["sql"] for q in on_replica.captured_queries if "content_document" in q["sql"]]
            assert reads == [], "the writer's next request must read from the primary"
            assert any("content_document" in q["sql"] for q in on_primary.captured_queries)
            # Another client, with no recent write, reads from the replica.
            other = Client(HTTP_HOST="beta.localhost")
            other.post("/admin/login/?next=/admin/", {"username": "owner@beta.test", "password": "beta-pass"})
            with CaptureQueriesContext(connections["shard_b_replica"]) as on_replica:
                other.get("/admin/content/document/")
            assert any("content_document" in q["sql"] for q in on_replica.captured_queries)
        finally:
            with tenant_activated(beta):
                Document.objects.filter(title="just written").delete()


# --- stopped shard ----------------------------------------------------------


@pytest.mark.live
def test_a_stopped_shard_affects_only_its_own_tenants(tenants, django_db_blocker, monkeypatch, settings):
    import psycopg

    settings.PRIMARY_RECHECK_SECONDS = 30  # what production does (the test settings turn it off)

    attempts = []  # real connection attempts to the stopped server
    real_connect = psycopg.connect

    def counting_connect(*args, **kwargs):
        if str(kwargs.get("port")) == str(server.port):
            attempts.append(kwargs.get("dbname"))
        return real_connect(*args, **kwargs)

    with django_db_blocker.unblock(), temporary_shard("fault") as (server, shard):
        with committed_tenant("faulty", shard="fault"):
            client = Client(HTTP_HOST="faulty.localhost")
            login = client.post("/admin/login/?next=/admin/", {"username": "owner@faulty.test", "password": "faulty-pass"})
            assert login.status_code == 302
            assert client.get("/admin/content/document/").status_code == 200
            server.stop()

            def request():
                response = client.get("/admin/content/document/")
                # What the end of a request does in a server process (the test
                # client leaves it out): a session that failed is closed.
                connections[shard.alias].close_if_unusable_or_obsolete()
                return response

            with monkeypatch.context() as patched:
                patched.setattr(psycopg, "connect", counting_connect)
                responses = [request() for _ in range(3)]
            for response in responses:
                assert response.status_code == 503
                assert response["Content-Type"] == "application/problem+json"
                assert int(response["Retry-After"]) > 0
            # The first request loses its open session; the next tries the
            # server once and is refused, so the shard is presumed down and the
            # one after does not try it again: no request waits on the stopped
            # server more than once.
            assert len(attempts) == 1, attempts

            alpha_owner = Client(HTTP_HOST="alpha.localhost")
            alpha_owner.post("/admin/login/?next=/admin/", {"username": "owner@alpha.test", "password": "alpha-pass"})
            assert alpha_owner.get("/admin/content/document/").status_code == 200

            ready = Client(HTTP_AUTHORIZATION=f"Bearer {django_settings.OPS_TOKEN}").get("/readyz", HTTP_HOST="localhost")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert "shard_fault" in ready.json()["down"]
            assert ready.json()["checks"]["shard_main"]["status"] == "up"

            server.start()
            wait_until(lambda: client.get("/admin/content/document/").status_code == 200, timeout=15)


@needs_two_servers
def test_an_unreachable_or_lagging_replica_sends_reads_to_the_primary(tenants, django_db_blocker, settings):
    from apps.tenancy import replicas

    settings.REPLICA_READS = True
    settings.REPLICA_CHECK_SECONDS = 0
    replicas.forget()
    beta = tenants["beta"]
    replica = connections["shard_b_replica"]
    with django_db_blocker.unblock():
        with tenant_activated(beta):
            assert Document.objects.all().db == "shard_b_replica"
        settings.REPLICA_MAX_LAG_BYTES = -1  # any lag is too much
        with tenant_activated(beta):
            assert Document.objects.all().db == "shard_b"
        settings.REPLICA_MAX_LAG_BYTES = 16 * 1024 * 1024
        real_port = replica.settings_dict["PORT"]
        replica.close()
        replica.settings_dict["PORT"] = 1  # the replica's server is gone
        try:
            with tenant_activated(beta):
                assert Document.objects.all().db == "shard_b"
                assert Document.objects.count() >= 0  # and the read succeeds, on the primary
        finally:
            replica.close()
            replica.settings_dict["PORT"] = real_port
            replicas.forget()
