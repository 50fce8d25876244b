"""Shards behind a real PgBouncer in transaction pooling mode.

A private PgBouncer (Debian's package, the project's configuration) with
fewer server connections than clients, in front of the test database of
shard `main`. Two committed tenants hold documents whose ids collide (each
schema counts from 1), so a statement on the wrong schema reads a
plausible row of the other tenant instead of failing.

* Through a real gunicorn, clients interleave both tenants' reads and writes:
  every read returns its own tenant's rows.
* A session-level SET would leak: shown for real with django-tenants' own
  backend through the same PgBouncer (the failure the pooled backend exists
  for), and not with the pooled one.
* Nothing set by a client survives its transaction on the server
  connection; iterators (server-side cursors), executemany and COPY keep
  their tenant's schema.
"""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest
import requests

from tests import pgbouncer
from tests.pgbouncer import database_aliases as aliases
from tests.support import Gunicorn, committed_tenant, process_env

pytestmark = [
    pytest.mark.live,
    pytest.mark.requires(pgbouncer.installed(), reason="PgBouncer is not installed (Debian package pgbouncer)"),
]

DOCUMENTS = 12
DEFAULT_SEARCH_PATH = '"$user", public'


def main_shard():
    from django.db import connections

    return connections["shard_main"].settings_dict


def bouncer(pool_size: int, **settings) -> pgbouncer.PgBouncer:
    shard = main_shard()
    return pgbouncer.PgBouncer(shard["HOST"], shard["PORT"], pool_size=pool_size, **settings)


@pytest.fixture
def two_tenants(tenants, django_db_blocker):
    """Two committed tenants on `main`, documents 1..DOCUMENTS in each."""
    from apps.content.models import Document
    from apps.tenancy.activation import tenant_activated

    with django_db_blocker.unblock(), committed_tenant("pgb-one") as one, committed_tenant("pgb-two") as two:
        for tenant in (one, two):
            with tenant_activated(tenant):
                Document.objects.bulk_create(Document(title=f"{tenant.slug} {n}") for n in range(DOCUMENTS))
                assert Document.objects.filter(pk=1).exists()  # ids collide across the schemas
        yield one, two


def title_of(connection, tenant, pk: int = 1) -> str:
    from apps.content.models import Document

    if connection.schema_name != tenant.schema_name:  # as activation does
        connection.set_tenant(tenant)
    return Document.objects.using(connection.alias).get(pk=pk).title


def test_a_session_level_search_path_leaks_through_transaction_pooling_and_the_pooled_backend_does_not(
    two_tenants, django_db_blocker
):
    one, two = two_tenants
    database = main_shard()["NAME"]
    # One server connection for two clients: every statement of both runs on it.
    with django_db_blocker.unblock(), bouncer(pool_size=1) as pool:
        with aliases(pool.url(database, pooled=False), "pgb_plain_a", "pgb_plain_b") as (a, b):
            assert not hasattr(a, "set_local_sql")  # django-tenants' session-level SET
            assert title_of(b, two) == "pgb-two 0"
            assert title_of(a, one) == "pgb-one 0"  # its session SET stays on the shared server connection
            # b set its schema once per connection (TENANT_LIMIT_SET_CALLS) and reads one's row.
            assert title_of(b, two) == "pgb-one 0"

    with django_db_blocker.unblock(), bouncer(pool_size=1) as pool:
        with aliases(pool.url(database), "pgb_pooled_a", "pgb_pooled_b") as (a, b):
            assert title_of(b, two) == "pgb-two 0"
            assert title_of(a, one) == "pgb-one 0"
            assert title_of(b, two) == "pgb-two 0"
            with psycopg.connect(pool.url(database, pooled=False), autocommit=True) as fresh:
                assert fresh.execute("SHOW search_path").fetchone()[0] == DEFAULT_SEARCH_PATH


def test_nothing_a_client_sets_survives_its_transaction_and_every_kind_of_statement_keeps_its_schema(
    two_tenants, django_db_blocker
):
    from django.db import transaction

    from apps.content.models import Document

    one, two = two_tenants
    database = main_shard()["NAME"]
    with django_db_blocker.unblock(), bouncer(pool_size=2) as pool, aliases(pool.url(database), "pgb_kinds") as (c,):
        alias = c.alias
        c.set_tenant(one)
        documents = Document.objects.using(alias).order_by("pk")
        # A server-side cursor outside a transaction: its own transaction on a
        # second client, while this client's autocommit writes go on.
        titles = []
        for title in documents.values_list("title", flat=True).iterator(chunk_size=5):
            titles.append(title)
            documents.filter(pk=len(titles)).update(body="seen")
        assert titles == [f"pgb-one {n}" for n in range(DOCUMENTS)]
        assert documents.filter(body="seen").count() == DOCUMENTS
        # ... and inside one (declared in it).
        with transaction.atomic(using=alias):
            assert list(documents.values_list("title", flat=True).iterator(chunk_size=5)) == titles
            c.set_tenant(two)  # a switch inside a transaction takes effect at the next statement
            assert documents.first().title == "pgb-two 0"
        with c.cursor() as cursor:
            cursor.executemany("UPDATE content_document SET body = %s WHERE id = %s", [("many", 1), ("many", 2)])
            with cursor.cursor.copy("COPY (SELECT title FROM content_document WHERE id = 1) TO STDOUT") as copy:
                assert b"".join(copy) == b"pgb-two 0\n"
        assert list(documents.filter(body="many").values_list("title", flat=True)) == ["pgb-two 0", "pgb-two 1"]
        c.set_tenant(one)
        assert not documents.filter(body="many").exists()
        assert pool.server_connections(database) <= 2

        # Both server connections at once (two open transactions): neither
        # kept a search_path from the statements above.
        fresh = [psycopg.connect(pool.url(database, pooled=False)) for _ in range(2)]
        try:
            paths = [conn.execute("SHOW search_path").fetchone()[0] for conn in fresh]
            backends = {conn.execute("SELECT pg_backend_pid()").fetchone()[0] for conn in fresh}
        finally:
            for conn in fresh:
                conn.close()
        assert len(backends) == 2 and paths == [DEFAULT_SEARCH_PATH] * 2


class Clients:
    """Client threads, each alternating between the tenants at random:
    reads of colliding ids (list pages that miss the cache, details) and
    writes read back at once."""

    def __init__(self, url: str, tenants: dict[str, str], threads: int, requests_each: int):
        self.url, self.tenants = url, tenants
        self.requests_each = requests_each
        self.foreign: list[str] = []
        self.failures: list[str] = []
        self.reads = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]

    def check(self, slug: str, titles: list[str], what: str) -> None:
        with self.lock:
            self.reads += len(titles)
            self.foreign += [f"{slug} {what} read {t!r}" for t in titles if not t.startswith(slug + " ")]

    def run(self, thread: int) -> None:
        session, rng = requests.Session(), random.Random(thread)
        for n in range(self.requests_each):
            slug = rng.choice(sorted(self.tenants))
            headers = {"Host": f"{slug}.localhost", "Authorization": f"Bearer {self.tenants[slug]}"}
            try:
                if n % 3 == 0:
                    created = session.post(f"{self.url}/api/v1/documents", json={"title": f"{slug} w{thread}-{n}"},
                                           headers=headers, timeout=15)
                    assert created.status_code == 201, created.text[:300]
                    pk = created.json()["id"]
                    got = session.get(f"{self.url}/api/v1/documents/{pk}", headers=headers, timeout=15)
                    assert got.status_code == 200, got.text[:300]
                    self.check(slug, [got.json()["title"]], f"document {pk}")
                elif n % 3 == 1:
                    # A path of its own: a cache miss, so the rows come from the database.
                    after = f"2000-01-01T00:00:00.{thread * 1000 + n:06d}Z"
                    page = session.get(f"{self.url}/api/v1/documents", params={"created_after": after,
                                                                                "page_size": 200},
                                       headers=headers, timeout=15)
                    assert page.status_code == 200, page.text[:300]
                    self.check(slug, [row["title"] for row in page.json()["results"]], "list")
                else:
                    pk = rng.randint(1, DOCUMENTS)
                    got = session.get(f"{self.url}/api/v1/documents/{pk}", headers=headers, timeout=15)
                    assert got.status_code == 200, got.text[:300]
                    self.check(slug, [got.json()["title"]], f"document {pk}")
            except (AssertionError, requests.RequestException, KeyError) as exc:
                with self.lock:
                    self.failures.append(f"{slug}: {exc}")

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for thread in self.threads:
            thread.join(timeout=60)


def test_interleaved_tenants_through_a_pool_smaller_than_the_clients_never_read_each_other(
    two_tenants, django_db_blocker
):
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token
    from apps.billing.models import Plan

    one, two = two_tenants
    database = main_shard()["NAME"]
    with django_db_blocker.unblock():
        tokens = {t.slug: issue_user_token(user_id=User.objects.get(email=f"owner@{t.slug}.test").pk, tenant_id=t.pk)
                  for t in (one, two)}
        limits = dict(Plan.objects.values_list("code", "rate_limit_per_minute"))
        Plan.objects.update(rate_limit_per_minute=1_000_000)
        try:
            with bouncer(pool_size=2) as pool:
                shards = process_env()["SHARD_URLS"].split(",")
                shards = [f"main={pool.url(database)}" if s.startswith("main=") else s for s in shards]
                # 2 processes x 8 threads, each a client of PgBouncer; 2 server connections.
                # No load shedding: this test is about isolation, and 503s would hide reads.
                env = {"SHARD_URLS": ",".join(shards), "GUNICORN_THREADS": "8", "SHED_ENABLED": "0"}
                with Gunicorn(workers=2, env=env) as web, Clients(web.url, tokens, threads=8,
                                                                  requests_each=24) as clients:
                    peak_clients = 0
                    while any(t.is_alive() for t in clients.threads):
                        pools = [p for p in pool.admin("SHOW POOLS") if p["database"] == database]
                        peak_clients = max(peak_clients, sum(p["cl_active"] + p["cl_waiting"] for p in pools))
                        assert pool.server_connections(database) <= 2
                        time.sleep(0.05)
        finally:
            for code, limit in limits.items():
                Plan.objects.filter(code=code).update(rate_limit_per_minute=limit)
    print(f"\n{clients.reads} rows read by 8 clients of 2 gunicorn processes x 8 threads (peak {peak_clients} "
          f"PgBouncer clients) over 2 server connections; {len(clients.foreign)} of another tenant")
    assert clients.foreign == [], clients.foreign[:5]
    assert not clients.failures, clients.failures[:5]
    assert clients.reads > 8 * 24
    assert peak_clients > 2  # more clients than server connections were in play
