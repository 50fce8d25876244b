"""A shard's replica or primary stopped for real, under persistent connections.

The shard `pair` is a private primary with a streaming replica of its own
(tests/pgtemp.py), so the tests may stop either server; the servers of the
rest of the suite are never touched. Two tenants live on it, to show that a
request served from the other copy still reads its own tenant's schema only.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass

import psycopg
import pytest
import requests
from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.content.models import Document
from apps.content.services import document_create
from apps.tenancy import replicas
from apps.tenancy.activation import tenant_activated
from apps.tenancy.context import pin_primary
from apps.tenancy.models import Tenant
from tests.pgtemp import TemporaryPostgres
from tests.support import Gunicorn, committed_tenant, temporary_shard
from tests.tools import second_shard_with_replica

SHARD = "pair"
DATABASE = f"saas_{SHARD}"


@dataclass
class Pair:
    primary: TemporaryPostgres
    replica: TemporaryPostgres
    alias: str
    replica_alias: str
    tenants: dict[str, Tenant]

    def replica_has(self, schema: str, title: str | None = None) -> bool:
        """Straight from the replica server (no Django connection of this process)."""
        try:
            with psycopg.connect(self.replica.url(DATABASE), connect_timeout=2, autocommit=True) as conn:
                if title is None:
                    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is not None
                return conn.execute(f'SELECT 1 FROM "{schema}".content_document WHERE title = %s',
                                    [title]).fetchone() is not None
        except psycopg.Error:
            return False

    def client_sessions_on_replica(self) -> int:
        with psycopg.connect(self.replica.url(DATABASE), connect_timeout=2, autocommit=True) as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()", [DATABASE]).fetchone()[0]


def wait_until(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        time.sleep(0.1)


def restart(server: TemporaryPostgres) -> None:
    if not server.answers():
        server.start()


@pytest.fixture(scope="module")
def pair(tenants, django_db_blocker):
    """Shard `pair`: primary + streaming replica, with tenants `pa` and `pb`,
    one committed document each."""
    from config.settings.base import database_config

    with django_db_blocker.unblock(), temporary_shard(SHARD) as (primary, shard):
        replica = TemporaryPostgres(standby_of=primary)
        replica.start()
        replica_alias = shard.alias + settings.REPLICA_ALIAS_SUFFIX
        settings.DATABASES[replica_alias] = database_config(replica.url(DATABASE),
                                                            connect_timeout=settings.SHARD_CONNECT_TIMEOUT)
        connections.configure_settings(settings.DATABASES)
        try:
            with committed_tenant("pair-a", shard=SHARD) as pa, committed_tenant("pair-b", shard=SHARD) as pb:
                made = Pair(primary, replica, shard.alias, replica_alias, {"pair-a": pa, "pair-b": pb})
                for slug, tenant in made.tenants.items():
                    with tenant_activated(tenant):
                        document_create(title=f"{slug} only")
                    wait_until(lambda s=slug, t=tenant: made.replica_has(t.schema_name, f"{s} only"),
                               what="replication to the replica")
                yield made
                restart(primary)
                restart(replica)
        finally:
            connections[replica_alias].close()
            del settings.DATABASES[replica_alias]
            replica.destroy()


@pytest.fixture
def healthy(pair):
    """Both servers up and this process remembering no failure, before and after."""
    restart(pair.primary)
    restart(pair.replica)
    wait_until(lambda: pair.primary.answers() and pair.replica.answers(), what="servers up")

    def reset() -> None:
        # This process's sessions may predate a stop (no request cycle here
        # health-checks them); start each test on fresh ones.
        for alias in (pair.alias, pair.replica_alias):
            connections[alias].close()
        replicas.forget()

    reset()
    yield pair
    restart(pair.primary)
    restart(pair.replica)
    reset()


def token_headers(tenant: Tenant, email: str | None = None) -> dict[str, str]:
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token

    user = User.objects.get(email=email or f"owner@{tenant.slug}.test")
    return {"Host": f"{tenant.slug}.localhost",
            "Authorization": f"Bearer {issue_user_token(user_id=user.pk, tenant_id=tenant.pk)}"}


def second_member(tenant: Tenant) -> str:
    """Another owner of ``tenant``: a client of its own (read-your-writes is per client)."""
    from apps.accounts.models import User
    from apps.accounts.services import membership_grant

    email = f"reader@{tenant.slug}.test"
    if not User.objects.filter(email=email).exists():
        user = User.objects.create_user(email=email, password="reader-pass-123")
        membership_grant(user=user, tenant_id=tenant.pk, role="owner")
    return email


def titles(response) -> set[str]:
    return {row["title"] for row in response.json()["results"]}


def failures(server: Gunicorn, alias: str) -> list[dict]:
    """The connection failures of ``alias`` that the server's processes
    recorded (apps.tenancy.replicas logs each one), in order."""
    found = []
    for line in server.log_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("message") == "shard server presumed down" \
                and record.get("alias") == alias:
            found.append(record)
    return found


def live_env(**extra: str) -> dict[str, str]:
    # No response cache: every GET must reach a database.
    return {"REPLICA_READS": "1", "TENANT_CACHE_ENABLED": "0", **extra}


# --- a replica stopped --------------------------------------------------------


@pytest.mark.live
def test_a_replica_lost_under_an_open_connection_is_read_again_from_the_primary(healthy, django_db_blocker, settings):
    """In this process (the test client never health-checks a connection), so
    the failure comes under a query of an open session, not at connect."""
    settings.REPLICA_READS = True
    settings.REPLICA_CHECK_SECONDS = 60  # the periodic check alone would notice much later
    settings.TENANT_CACHE_ENABLED = False  # every GET reaches a database
    pa = healthy.tenants["pair-a"]
    with django_db_blocker.unblock():
        client = Client(**{f"HTTP_{k.upper()}": v for k, v in token_headers(pa).items()})
        with CaptureQueriesContext(connections[healthy.replica_alias]) as on_replica:
            assert client.get("/api/v1/documents").status_code == 200
        assert any("content_document" in q["sql"] for q in on_replica.captured_queries)
        assert connections[healthy.replica_alias].connection is not None  # an open session

        healthy.replica.stop()
        with CaptureQueriesContext(connections[healthy.alias]) as on_primary:
            response = client.get("/api/v1/documents")
        assert response.status_code == 200, response.content
        assert titles(response) == {"pair-a only"}  # its own schema on the primary, not pb's
        assert any("content_document" in q["sql"] for q in on_primary.captured_queries)
        assert not replicas.replica_fit(healthy.alias, healthy.replica_alias)  # dropped at once, not after 60 s
        with tenant_activated(pa):
            assert Document.objects.all().db == healthy.alias


@pytest.mark.live
def test_replica_stopped_under_gunicorn_every_read_is_served_by_the_primary(healthy, django_db_blocker):
    with django_db_blocker.unblock():
        # Two tenants of the shard take turns on the same worker threads and connections.
        clients = [(slug, token_headers(tenant)) for slug, tenant in healthy.tenants.items()]
    # A long check interval: only the failure itself can take the replica out of reads.
    with Gunicorn(workers=1, env=live_env(REPLICA_CHECK_SECONDS="60")) as server:
        url = f"{server.url}/api/v1/documents"
        for _ in range(4):
            for slug, headers in clients:
                response = requests.get(url, headers=headers, timeout=10)
                assert response.status_code == 200 and titles(response) == {f"{slug} only"}
        assert healthy.client_sessions_on_replica() >= 1  # persistent connections to the replica are open

        failed_before = len(failures(server, healthy.replica_alias))
        healthy.replica.stop()
        answers = []
        for _ in range(10):
            for slug, headers in clients:
                response = requests.get(url, headers=headers, timeout=10)
                answers.append((slug, response.status_code,
                                titles(response) if response.status_code == 200 else response.text[:200]))
        assert [status for _, status, _ in answers] == [200] * 20, (answers, server.log_text()[-2000:])
        assert all(seen == {f"{slug} only"} for slug, _, seen in answers)  # each its own schema
        # The first failure takes the replica out of reads for the check
        # interval: the other 19 reads go to the primary without trying it
        # (and without waiting on it) again.
        failed = failures(server, healthy.replica_alias)[failed_before:]
        assert len(failed) == 1, failed

        healthy.replica.start()
        for slug, headers in clients:
            response = requests.get(url, headers=headers, timeout=10)
            assert response.status_code == 200 and titles(response) == {f"{slug} only"}


# --- a primary stopped --------------------------------------------------------


@pytest.mark.live
def test_primary_stopped_reads_come_from_the_replica_writes_and_fresh_readers_get_503(healthy, django_db_blocker):
    pa = healthy.tenants["pair-a"]
    with django_db_blocker.unblock():
        writer = token_headers(pa)
        reader = token_headers(pa, second_member(pa))
    env = live_env(READ_YOUR_WRITES_SECONDS="60", PRIMARY_RECHECK_SECONDS="1", REPLICA_CHECK_SECONDS="1")
    with Gunicorn(workers=1, env=env) as server:
        url = f"{server.url}/api/v1/documents"
        created = requests.post(url, json={"title": "written before the outage"}, headers=writer, timeout=10)
        assert created.status_code == 201, created.text
        wait_until(lambda: healthy.replica_has(pa.schema_name, "written before the outage"), what="replication")
        assert requests.get(url, headers=reader, timeout=10).status_code == 200

        failed_before = len(failures(server, healthy.alias))
        healthy.primary.stop()
        try:
            reads = [requests.get(url, headers=reader, timeout=10) for _ in range(10)]
            assert [r.status_code for r in reads] == [200] * 10, server.log_text()[-2000:]
            assert all(titles(r) == {"pair-a only", "written before the outage"} for r in reads)  # pa's rows only
            # A refused primary is presumed down: no read tries it more than
            # once (or waits out a connect timeout on it more than once).
            read_ids = {r.headers["X-Request-ID"] for r in reads}
            tried = Counter(f["request_id"] for f in failures(server, healthy.alias)[failed_before:]
                            if f.get("request_id") in read_ids)
            assert all(count == 1 for count in tried.values()), tried

            # The writer is inside its read-your-writes window: no stale data, a 503.
            own_read = requests.get(url, headers=writer, timeout=10)
            assert own_read.status_code == 503
            assert int(own_read.headers["Retry-After"]) > 0
            assert own_read.headers["Content-Type"] == "application/problem+json"

            for headers in (reader, writer):
                write = requests.post(url, json={"title": "during the outage"}, headers=headers, timeout=10)
                assert write.status_code == 503
                assert int(write.headers["Retry-After"]) > 0
                assert write.json()["type"].endswith("/shard-unavailable")
        finally:
            healthy.primary.start()

        def written_after() -> bool:
            response = requests.post(url, json={"title": "after the outage"}, headers=reader, timeout=10)
            return response.status_code == 201

        wait_until(written_after, timeout=15, what="writes accepted again")
        back = requests.get(url, headers=writer, timeout=10)
        assert back.status_code == 200
        assert "after the outage" in titles(back)
    connections[healthy.alias].close()  # its session died with the stop
    with django_db_blocker.unblock(), tenant_activated(pa):
        Document.objects.exclude(title="pair-a only").delete()


@pytest.mark.live
def test_a_refused_primary_is_presumed_down_its_reads_go_to_the_replica(healthy, django_db_blocker, settings):
    settings.REPLICA_READS = True
    settings.PRIMARY_RECHECK_SECONDS = 30
    pa, pb = healthy.tenants["pair-a"], healthy.tenants["pair-b"]
    with django_db_blocker.unblock():
        healthy.primary.stop()
        connections[healthy.alias].close()
        with tenant_activated(pa):
            with pytest.raises(OperationalError) as refused:
                Document.objects.filter(title="pair-a only").update(body="x")
            assert refused.value.db_alias == healthy.alias  # which server failed is known, not guessed
            assert not isinstance(refused.value.__cause__, replicas.PresumedDown)  # a real attempt
        assert replicas.presumed_down(healthy.alias)
        with tenant_activated(pa):
            with pytest.raises(OperationalError) as again:
                Document.objects.filter(title="pair-a only").update(body="x")
            # No second connect: it fails at once instead of waiting out a connect timeout.
            assert isinstance(again.value.__cause__, replicas.PresumedDown)
        with tenant_activated(pb):
            assert Document.objects.all().db == healthy.replica_alias
            assert list(Document.objects.values_list("title", flat=True)) == ["pair-b only"]  # pb's schema only
            pin_primary(settings.READ_YOUR_WRITES_SECONDS)  # this client just wrote: never stale data
            assert Document.objects.all().db == healthy.alias
        healthy.primary.start()
        replicas.forget()
        with tenant_activated(pa):
            assert Document.objects.filter(title="pair-a only").update(body="") == 1


# --- reads inside a write transaction ----------------------------------------


needs_shard_b_replica = pytest.mark.requires(
    second_shard_with_replica(),
    reason="needs shard b on a second server with a replica (bin/dev test sets this up)",
)


@needs_shard_b_replica
def test_quota_counts_inside_the_write_transaction_see_its_own_rows(tenants, django_db_blocker, settings):
    """With replica reads on and committed data: the count that guards a write
    runs on the primary, in the write's transaction. On the replica it would
    miss the rows the transaction just added and let a batch of creates in one
    transaction pass the plan's limit."""
    from apps.analytics.services import EventInput, events_ingest
    from apps.billing.models import Plan
    from apps.http.errors import QuotaExceeded

    settings.REPLICA_READS = True
    replicas.forget()
    beta = tenants["beta"]
    with django_db_blocker.unblock():
        with tenant_activated(beta):
            used = Document.objects.count()
        plan = Plan.objects.get(pk=Tenant.objects.get(pk=beta.pk).plan_id)
        usual = plan.max_documents
        plan.max_documents = used + 1  # room for exactly one more document
        plan.save(update_fields=["max_documents"])
        try:
            with tenant_activated(beta):
                assert Document.objects.all().db == "shard_b_replica"  # reads outside a transaction
                with CaptureQueriesContext(connections["shard_b_replica"]) as on_replica:
                    with transaction.atomic(using="shard_b"):
                        document_create(title="the last one allowed")
                        with pytest.raises(QuotaExceeded):
                            document_create(title="one too many")
                        events_ingest(events=[EventInput(type="page.view", timestamp=timezone.now(),
                                                         properties={})])
                        transaction.set_rollback(True, using="shard_b")
                counted = [q["sql"] for q in on_replica.captured_queries
                           if "content_document" in q["sql"] or "analytics_dailyrollup" in q["sql"]]
                assert counted == []
        finally:
            plan.max_documents = usual
            plan.save(update_fields=["max_documents"])
            with tenant_activated(beta):
                assert Document.objects.count() == used
