"""Cache faults for real: a private Redis behind a real gunicorn, killed or
paused (SIGSTOP) inside cached reads and around writes.

* A read survives Redis dying at any step (cold, warm, stale refresh, lock
  wait): 200 with the right data, never 500.
* A write whose invalidation could not reach Redis (paused) is never
  followed by a stale read once Redis answers again: documents and the
  hostname -> tenant lookup, through several workers.
* A process that alone could not reach Redis leaves a record that the sweep
  applies.

Points inside a read are reached deterministically: the test holds an
ACCESS EXCLUSIVE lock on the tenant's document table, so a request that
computes blocks there; Redis is killed meanwhile, and the lock released.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
import requests

from tests import support
from tests.redis_faults import cache_on, private_redis
from tests.support import Gunicorn, committed_tenant, manage
from tests.workers import wait_until

pytestmark = pytest.mark.live


class Http:
    """One tenant host, one credential, a new connection per request (so
    requests spread over the gunicorn workers)."""

    def __init__(self, server: Gunicorn, tenant, token: str):
        self.base = f"{server.url}/api/v1/"
        self.headers = {"Host": f"{tenant.slug}.localhost", "Authorization": f"Bearer {token}"}

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, timeout=20)

    def post(self, path: str, body: dict) -> requests.Response:
        return requests.post(self.base + path, json=body, headers=self.headers, timeout=20)

    def patch(self, path: str, body: dict, etag: str) -> requests.Response:
        return requests.patch(self.base + path, json=body, headers={**self.headers, "If-Match": etag}, timeout=20)


def owner_token(tenant) -> str:
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token

    return issue_user_token(user_id=User.objects.get(email=f"owner@{tenant.slug}.test").pk, tenant_id=tenant.pk)


@contextmanager
def live_tenant(slug: str, **env: str):
    """A committed tenant, a private Redis, and gunicorn (3 workers) using it."""
    with committed_tenant(slug) as tenant, private_redis() as redis_server:
        with Gunicorn(workers=3, env={"REDIS_URL": redis_server.url, **env}) as server:
            yield tenant, redis_server, Http(server, tenant, owner_token(tenant)), server


@contextmanager
def documents_locked(tenant):
    """Hold an exclusive lock on the tenant's documents: reads that compute wait."""
    with psycopg.connect(support.test_database_url(tenant.shard.alias)) as conn:
        conn.execute(f'LOCK TABLE "{tenant.schema_name}".content_document IN ACCESS EXCLUSIVE MODE')
        yield
        conn.rollback()


def readers_waiting_on_documents(tenant) -> int:
    with psycopg.connect(support.test_database_url(tenant.shard.alias), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query ILIKE '%content_document%'").fetchone()[0]


def server_errors(server) -> str:
    """The first traceback in the server's log (for a failure message)."""
    text = server.log_text()
    start = text.find("Traceback")
    return text[start:start + 4000] if start >= 0 else text[-2000:]


def detail(response: requests.Response) -> tuple[int, str | None, str | None]:
    body = response.json() if response.headers.get("Content-Type", "").endswith("json") else {}
    return response.status_code, body.get("title"), response.headers.get("ETag")


def problem(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json().get("type", "").rsplit("/", 1)[-1]


def sample(request, pool: ThreadPoolExecutor, *, seconds: float) -> list:
    """Rounds of 4 parallel requests for ``seconds`` (under the plan's rate limit)."""
    results, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        results += pool.map(lambda _: request(), range(4))
        time.sleep(0.25)
    return results


def test_redis_dying_at_any_step_of_a_cached_read_still_answers_200(tenants, django_db_blocker):
    with django_db_blocker.unblock(), live_tenant("cachekill", CACHE_DEFAULT_SECONDS="1") as (
            tenant, redis_server, http, server):
        doc = http.post("documents", {"title": "kept"}).json()
        path = f"documents/{doc['id']}"
        expected = (200, "kept", '"1"')
        pool = ThreadPoolExecutor(max_workers=4)

        # Warm: the entry is there; Redis dies before the read.
        assert [detail(http.get(path)) for _ in range(4)] == [expected] * 4
        redis_server.kill()
        assert [detail(http.get(path)) for _ in range(4)] == [expected] * 4

        # Cold: the read took the lock and is computing when Redis dies (store and unlock fail).
        # Lock wait: a second read waits for the first one's entry when Redis dies.
        redis_server.restart()
        time.sleep(0.5)  # every worker's monitor sees Redis again
        with documents_locked(tenant):
            computing = pool.submit(http.get, path)
            wait_until(lambda: readers_waiting_on_documents(tenant) == 1, 10, message="first read computing")
            waiting = pool.submit(http.get, path)
            time.sleep(0.3)  # polling for the first read's entry
            redis_server.kill()
            time.sleep(0.3)
        assert detail(computing.result()) == expected and detail(waiting.result()) == expected

        # Stale refresh: the entry is past its soft expiry; the read refreshing it sees Redis die.
        redis_server.restart()
        time.sleep(0.5)
        assert [detail(http.get(path)) for _ in range(3)] == [expected] * 3
        time.sleep(1.3)  # past the soft expiry (1 s +- 10%), within the grace period
        with documents_locked(tenant):
            refreshing = pool.submit(http.get, path)
            wait_until(lambda: readers_waiting_on_documents(tenant) >= 1, 10, message="a read refreshing")
            redis_server.kill()
        assert detail(refreshing.result()) == expected
        pool.shutdown()
        # The lists and usage too, with Redis still gone.
        assert http.get("documents").status_code == 200 and http.get("usage").status_code == 200
        assert '"status_code": 500' not in server.log_text()


def test_a_write_during_a_redis_pause_is_never_followed_by_a_stale_read(tenants, django_db_blocker, settings):
    from apps.tenancy.services import tenant_set_status

    with django_db_blocker.unblock(), live_tenant("cachepause") as (tenant, redis_server, http, server):
        doc = http.post("documents", {"title": "before"}).json()
        path = f"documents/{doc['id']}"
        with ThreadPoolExecutor(max_workers=6) as pool:
            warm = list(pool.map(lambda _: detail(http.get(path)), range(12)))  # cached in every worker
            assert set(warm) == {(200, "before", '"1"')}, server_errors(server)
            assert http.get("usage").json()["quotas"]["documents"]["used"] == 1

            redis_server.pause()
            patched = http.patch(path, {"title": "after"}, '"1"')
            created = http.post("documents", {"title": "second"})
            assert patched.status_code == 200 and created.status_code == 201  # committed
            time.sleep(0.5)
            redis_server.resume()

            reads = sample(lambda: detail(http.get(path)), pool, seconds=3)
            assert set(reads) == {(200, "after", '"2"')}, f"{len(reads)} reads: {sorted(set(reads))}"
            assert http.get("usage").json()["quotas"]["documents"]["used"] == 2
            assert {d["title"] for d in http.get("documents").json()["results"]} == {"after", "second"}

            # The host lookup: the tenant is suspended (the service, in this
            # process, on the same Redis) while Redis is paused.
            with cache_on(settings, redis_server.url):
                redis_server.pause()
                tenant_set_status(tenant=tenant, status="suspended")
                time.sleep(0.3)
                redis_server.resume()
            answers = sample(lambda: http.get(path), pool, seconds=1.5)
            assert {problem(r) for r in answers} == {(403, "tenant-suspended")}


def test_a_process_that_alone_could_not_reach_redis_leaves_a_record_the_sweep_applies(
        tenants, django_db_blocker, settings):
    from apps.caching.models import PendingInvalidation
    from apps.jobs.cache_tasks import sweep_invalidations

    with django_db_blocker.unblock(), live_tenant("cachesweep") as (tenant, redis_server, http, server):
        assert http.get("me").status_code == 200  # the host lookup is cached
        PendingInvalidation.objects.all().delete()
        # A manage.py run whose Redis is unreachable (a partial partition): the
        # web processes never saw an outage and keep their cache generation.
        result = manage("set_tenant_status", tenant.slug, "suspended", REDIS_URL="redis://127.0.0.1:1/0")
        assert result.returncode == 0, result.stderr
        assert PendingInvalidation.objects.exists()
        assert http.get("me").status_code == 200  # stale until the sweep: the bound this test pins down
        with cache_on(settings, redis_server.url):
            assert sweep_invalidations() >= 1
        assert not PendingInvalidation.objects.exists()
        answer = http.get("me")
        assert problem(answer) == (403, "tenant-suspended")


def test_control_plane_invalidations_run_after_the_control_plane_commits(tenants, django_db_blocker):
    """A request that reads between the service's write and its commit
    caches the committed (old) state; the invalidation after the commit
    must make the next read see the change."""
    import uuid

    from django.db import connections, transaction
    from django.test import Client

    from apps.accounts import services
    from apps.accounts.models import User

    def concurrently(read):
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(lambda: (read(), connections.close_all())[0]).result()

    with django_db_blocker.unblock(), committed_tenant("cacheorder") as tenant:
        client = Client(HTTP_HOST=f"{tenant.slug}.localhost", HTTP_AUTHORIZATION=f"Bearer {owner_token(tenant)}")

        def used(quota: str) -> int:
            return client.get("/api/v1/usage").json()["quotas"][quota]["used"]

        assert used("api_keys") == 0
        with transaction.atomic(using="default"):
            created = services.api_key_create(tenant_id=tenant.pk, name="k", scopes=["read"], created_by=None)
            assert concurrently(lambda: used("api_keys")) == 0
        assert used("api_keys") == 1
        with transaction.atomic(using="default"):
            services.api_key_revoke(api_key=created.api_key)
            assert concurrently(lambda: used("api_keys")) == 1
        assert used("api_keys") == 0

        user = User.objects.create_user(email=f"{uuid.uuid4().hex[:8]}@cacheorder.test", password="password-123")
        try:
            assert used("seats") == 1
            with transaction.atomic(using="default"):
                membership = services.membership_grant(user=user, tenant_id=tenant.pk, role="member")
                assert concurrently(lambda: used("seats")) == 1
            assert used("seats") == 2
            with transaction.atomic(using="default"):
                services.membership_remove(membership=membership, acting_role="owner")
                assert concurrently(lambda: used("seats")) == 2
            assert used("seats") == 1
        finally:
            user.delete()
