"""The Redis health monitor and the cache generation, against a private Redis
that is paused (SIGSTOP) and killed for real."""

from __future__ import annotations

import os
import threading
import time

import pytest

from apps.caching import health, versioned
from apps.caching.models import PendingInvalidation
from apps.tenancy import tenant_cache
from apps.tenancy.activation import tenant_activated
from tests.redis_faults import cache_on, counting_round_trips, private_redis
from tests.workers import wait_until

# A private redis-server per test: the live lane.
pytestmark = [pytest.mark.live, pytest.mark.django_db]


@pytest.fixture
def redis_server(settings):
    with private_redis() as server, cache_on(settings, server.url):
        yield server


def cached(tenant, value, key="k"):
    with tenant_activated(tenant):
        return tenant_cache.get_or_compute("docs", key, lambda: value)


def outcomes(namespace="docs") -> dict[str, float]:
    """This process's cached reads of ``namespace`` so far, by outcome: the
    counter the cache itself counts them on (not the whole registry, whose
    scrape-time readings would talk to Redis and the databases)."""
    (family,) = tenant_cache.metrics.cache_requests.collect()
    return {sample.labels["result"]: sample.value for sample in family.samples
            if sample.name.endswith("_total") and sample.labels["namespace"] == namespace}


def added(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {result: count - before.get(result, 0) for result, count in after.items() if count != before.get(result, 0)}


def test_an_outage_hides_every_entry_written_before_it(redis_server, alpha):
    assert cached(alpha, "old") == "old"
    assert cached(alpha, "new") == "old"  # served from Redis
    before = health.generation()

    redis_server.pause()
    wait_until(lambda: health.generation() is None, 3, 0.02, "the monitor sees the pause")
    counted = outcomes()
    with counting_round_trips() as sent:
        assert cached(alpha, "during") == "during"
    # Computed straight away: no Redis command (so no timeout to wait out) and
    # no wait for another reader's entry (that would count as "waited" or "miss").
    assert sent == []
    assert added(counted, outcomes()) == {"bypass": 1}

    redis_server.resume()
    wait_until(lambda: health.generation() is not None, 3, 0.02, "the monitor sees Redis again")
    assert health.generation() > before
    assert cached(alpha, "after") == "after"  # the pre-outage entry is unreachable
    assert cached(alpha, "later") == "after"  # and caching works again


def test_an_answer_that_arrives_after_the_pause_began_is_not_served(redis_server, alpha):
    assert cached(alpha, "old") == "old"
    results = []
    redis_server.pause()
    reader = threading.Thread(target=lambda: results.append(cached(alpha, "fresh")))
    reader.start()  # its GET waits inside the paused Redis
    wait_until(lambda: health.generation() is None, 3, 0.02, "the monitor sees the pause")
    redis_server.resume()  # the reader's answer (the old entry) arrives now, within its timeout
    reader.join(5)
    assert results == ["fresh"]


def test_a_killed_redis_comes_back_empty_and_the_generation_still_only_grows(redis_server, alpha):
    cached(alpha, "old")
    before = health.generation()
    redis_server.kill()
    wait_until(lambda: health.generation() is None, 3, 0.02, "the monitor sees the outage")
    redis_server.restart()  # no persistence: the generation key is gone too
    wait_until(lambda: health.generation() is not None, 5, 0.02, "the monitor sees Redis again")
    assert health.generation() > before
    assert cached(alpha, "new") == "new"


def test_a_forked_child_runs_its_own_monitor(redis_server):
    parent = health.monitor()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        ok = False
        try:
            child = health.monitor()
            ok = child is not parent and child.pid == os.getpid() and child._thread.is_alive() \
                and child.serving is not None
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        pytest.fail("the forked child hung")
    assert parent._thread.is_alive() and health.monitor() is parent


def test_an_invalidation_that_cannot_reach_redis_is_recorded_then_swept(
        redis_server, alpha, django_capture_on_commit_callbacks):
    cached(alpha, "old")
    version_key = tenant_cache._version_key(alpha.pk, "docs")
    redis_server.pause()
    wait_until(lambda: health.generation() is None, 3, 0.02, "the monitor sees the pause")
    with django_capture_on_commit_callbacks(using=alpha.shard.alias, execute=True), tenant_activated(alpha):
        tenant_cache.invalidate("docs")
    assert list(PendingInvalidation.objects.values_list("version_key", flat=True)) == [version_key]

    redis_server.resume()
    assert versioned.apply_pending() == 1
    assert not PendingInvalidation.objects.exists()
    # At least once: the INCR that timed out waited in the paused server's
    # socket and ran on resume, then the sweep raised the version again.
    assert int(versioned.client().get(version_key)) >= 1


def test_a_sweep_while_redis_is_down_keeps_the_rows(redis_server, alpha):
    from apps.jobs.cache_tasks import sweep_invalidations

    PendingInvalidation.objects.create(version_key=tenant_cache._version_key(alpha.pk, "docs"))
    redis_server.kill()
    assert sweep_invalidations() == 0
    assert PendingInvalidation.objects.count() == 1


def test_a_cached_read_costs_one_round_trip_and_a_cold_one_two(alpha):
    health.monitor()  # its first probe is not the read's
    with tenant_activated(alpha):
        with counting_round_trips() as cold:
            tenant_cache.get_or_compute("docs", "rt", lambda: "value")
        with counting_round_trips() as warm:
            assert tenant_cache.get_or_compute("docs", "rt", lambda: "other") == "value"
    assert len(cold) == 2  # version + entry + lock in one script; then store + unlock in one pipeline
    assert len(warm) == 1  # version + entry in one script
