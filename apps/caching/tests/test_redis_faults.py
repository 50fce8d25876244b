"""Redis dying at each step of a cached read or an invalidation, as the request
path sees it: this process's monitor is stopped, so every failure below is a
real error raised by a request-path Redis call, which must degrade to the
database and never reach the caller."""

from __future__ import annotations

import threading
import time

import pytest

from apps.caching import health, versioned
from apps.caching.models import PendingInvalidation
from apps.tenancy import tenant_cache
from apps.tenancy.activation import tenant_activated
from tests.redis_faults import cache_on, private_redis

# A private redis-server per test: the live lane.
pytestmark = [pytest.mark.live, pytest.mark.django_db]


@pytest.fixture
def redis_server(settings):
    with private_redis() as server, cache_on(settings, server.url):
        health.monitor().stop()  # only the request path notices what happens to Redis
        yield server


def read(tenant, value, *, ttl=None, key="k"):
    with tenant_activated(tenant):
        return tenant_cache.get_or_compute("docs", key, value if callable(value) else lambda: value, ttl=ttl)


def test_warm_read_redis_dead_before_it(redis_server, alpha):
    assert read(alpha, "old") == "old" and read(alpha, "x") == "old"
    redis_server.kill()
    assert read(alpha, "from the database") == "from the database"
    assert health.generation() is None


def test_cold_read_redis_dies_while_it_computes(redis_server, alpha):
    def compute():
        redis_server.kill()  # the store and the lock release that follow fail
        return "computed"

    assert read(alpha, compute) == "computed"


def test_stale_refresh_redis_dies_before_the_lock_or_while_computing(redis_server, alpha, monkeypatch):
    read(alpha, "old", ttl=1, key="a")
    read(alpha, "old", ttl=1, key="b")
    time.sleep(1.2)  # past the soft expiry, within the grace period
    take_lock = versioned.take_lock

    def dying_take_lock(found, seconds):
        redis_server.kill()
        return take_lock(found, seconds)

    monkeypatch.setattr(versioned, "take_lock", dying_take_lock)
    assert read(alpha, "new", ttl=1, key="a") == "new"
    monkeypatch.undo()

    redis_server.restart()
    health.monitor().check()  # back, with a new generation (the old entries are gone anyway)
    read(alpha, "old", ttl=1, key="b")
    time.sleep(1.2)

    def compute():
        redis_server.kill()
        return "new"

    assert read(alpha, compute, ttl=1, key="b") == "new"


def test_lock_wait_redis_dies_while_waiting_for_the_other_readers_entry(redis_server, alpha):
    results = {}

    def slow():
        time.sleep(0.6)
        return "computed"

    first = threading.Thread(target=lambda: results.setdefault("first", read(alpha, slow)))
    first.start()
    time.sleep(0.1)  # the first reader holds the lock
    second = threading.Thread(target=lambda: results.setdefault("second", read(alpha, "computed too")))
    second.start()
    time.sleep(0.2)  # the second is polling for the first one's entry
    redis_server.kill()
    first.join(5)
    second.join(5)
    assert results == {"first": "computed", "second": "computed too"}


def test_invalidation_redis_dead_records_it_and_the_write_goes_on(
        redis_server, alpha, django_capture_on_commit_callbacks):
    read(alpha, "old")
    redis_server.kill()
    with django_capture_on_commit_callbacks(using=alpha.shard.alias, execute=True), tenant_activated(alpha):
        tenant_cache.invalidate("docs")  # the raise now fails, and the one after commit
    assert PendingInvalidation.objects.filter(version_key=tenant_cache._version_key(alpha.pk, "docs")).exists()


def test_host_lookup_and_flags_with_redis_dead(redis_server, alpha):
    from apps.flags.models import Flag
    from apps.flags.selectors import flag_enabled
    from apps.tenancy.selectors import tenant_for_hostname

    Flag.objects.create(key="cache-fault-flag", enabled=True, everyone=True)
    assert tenant_for_hostname("alpha.localhost") == alpha and flag_enabled("cache-fault-flag", tenant=alpha)
    redis_server.kill()
    assert tenant_for_hostname("alpha.localhost") == alpha
    assert tenant_for_hostname("nobody.localhost") is None
    assert flag_enabled("cache-fault-flag", tenant=alpha)
