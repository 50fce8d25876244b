"""Versions held in process and dropped by Redis' pushes (apps.caching.pushed):
what a warm request saves, that a change is seen by the very next request
without waiting, and that a lost push connection, a flush or a Redis pause
means nothing held is used."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from django.test import Client

from apps.caching import health, local, pushed, versioned
from apps.content.models import Document
from apps.tenancy.activation import tenant_activated
from apps.tenancy.selectors import hostname_version_key, resolve_host
from tests.redis_faults import cache_on, counting_round_trips, private_redis

pytestmark = pytest.mark.django_db


def live_watch(timeout: float = 5.0) -> pushed.Watch:
    """This process's watch, once it is subscribed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watch = pushed.watch()
        if watch is not None and watch.start_read() is not None:
            return watch
        time.sleep(0.02)
    raise AssertionError("the push connection did not come up")


def host(tenant) -> str:
    return f"{tenant.slug}.localhost"


def raw_client() -> redis.Redis:
    """Another connection, as another process would write with."""
    return redis.Redis.from_url(health.cache_location())


def held(key: str):
    token = pushed.start_read()
    assert token is not None
    values = token[0].get([key])
    return None if values is None else values[0]


def kill_watch_connection() -> None:
    other = raw_client()
    for entry in other.client_list():
        if entry.get("name", "").startswith("push-"):
            other.client_kill_filter(_id=entry["id"])


def test_a_warm_request_asks_redis_nothing_and_a_cached_read_once(alpha, api):
    live_watch()
    browser = Client(HTTP_HOST=host(alpha))
    for _ in range(3):  # the host, then its tenant's versions (created on first read) are held
        browser.get("/")
    with counting_round_trips() as trips:
        assert browser.get("/").status_code == 200
    assert trips == []
    client = api(alpha, via="key", scopes=["read"])
    with tenant_activated(alpha):
        doc = Document.objects.create(title="held", body="b")
    for _ in range(2):
        assert client.get(f"documents/{doc.pk}").status_code == 200
    with counting_round_trips() as trips:
        assert client.get(f"documents/{doc.pk}").status_code == 200
    assert len(trips) == 1, trips  # the rate limit and the cached entry, one pipeline


def test_a_change_written_elsewhere_is_seen_by_the_next_read_without_waiting(alpha):
    live_watch()
    key = local.access_version_key(alpha.pk)
    resolve_host(host(alpha), lambda tenant_id: ([local.access_version_key(tenant_id)], []))
    resolve_host(host(alpha), lambda tenant_id: ([local.access_version_key(tenant_id)], []))
    before = held(key)
    assert before is not None
    raw_client().incr(key)  # what versioned.invalidate does, from another process
    assert held(key) is None  # no sleep: the push was on the socket before the INCR returned
    _, extra = resolve_host(host(alpha), lambda tenant_id: ([local.access_version_key(tenant_id)], []))
    assert int(extra[key]) == int(before) + 1


def test_a_suspension_reaches_a_warm_process_at_once(alpha):
    live_watch()
    for _ in range(2):
        assert resolve_host(host(alpha))[0].is_suspended is False
    other = raw_client()
    other.incr(hostname_version_key(host(alpha)))  # as the tenant's save signal does, after commit
    type(alpha).objects.filter(pk=alpha.pk).update(status="suspended")
    assert resolve_host(host(alpha))[0].is_suspended is True


def test_a_lost_push_connection_stops_holding_and_comes_back(alpha):
    watch = live_watch()
    key = hostname_version_key(host(alpha))
    resolve_host(host(alpha))
    resolve_host(host(alpha))
    assert held(key) is not None
    connects = watch.connects
    kill_watch_connection()
    raw_client().incr(key)  # a change while no pushes can arrive
    time.sleep(0.05)
    found = pushed.start_read()
    assert found is None or found[0].get([key]) is None  # never the old value
    deadline = time.monotonic() + 5
    while watch.connects == connects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert watch.connects > connects
    live_watch()
    assert held(key) is None  # everything held was dropped on the way down
    version = raw_client().get(key).decode()
    resolve_host(host(alpha))
    assert held(key) == version


@pytest.mark.live
def test_a_flush_drops_everything_held(alpha):
    live_watch()
    key = hostname_version_key(host(alpha))
    resolve_host(host(alpha))
    resolve_host(host(alpha))
    assert held(key) is not None
    # FLUSHDB would wipe the shared test Redis; a private one shows the same.
    with private_redis() as server:
        own = redis.Redis.from_url(server.url)
        from django.conf import settings

        with cache_on(settings, server.url):
            watch = live_watch()
            resolve_host(host(alpha))
            resolve_host(host(alpha))
            assert held(key) is not None
            own.flushall()
            assert held(key) is None
            assert watch is pushed.watch()


@pytest.mark.live
def test_a_paused_redis_means_nothing_held_is_used(alpha, settings):
    with private_redis() as server, cache_on(settings, server.url):
        live_watch()
        key = hostname_version_key(host(alpha))
        resolve_host(host(alpha))
        resolve_host(host(alpha))
        assert held(key) is not None
        server.pause()
        try:
            # Within the request timeout every process has seen the pause
            # (the health probe, the push connection's ping).
            deadline = time.monotonic() + settings.REDIS_TIMEOUT_SECONDS + settings.PUSH_SILENCE_SECONDS
            while pushed.start_read() is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert pushed.start_read() is None
            # The request path reads the database, and answers.
            assert resolve_host(host(alpha))[0].pk == alpha.pk
        finally:
            server.resume()
        live_watch(timeout=10)


def test_a_value_read_while_its_push_is_handled_is_not_held(alpha):
    watch = live_watch()
    key = local.access_version_key(alpha.pk)
    token = watch.start_read()
    stale = versioned.read_versions([key])[0]
    raw_client().incr(key)
    watch.start_read()  # the push is handled after the read started
    watch.remember(token, [key], [stale])
    assert watch.get([key]) is None


def test_values_outside_the_watched_prefix_are_never_held(alpha):
    watch = live_watch()
    token = watch.start_read()
    watch.remember(token, ["elsewhere:key"], ["1"])
    assert watch.get(["elsewhere:key"]) is None


def test_threads_reading_while_pushes_arrive_never_see_an_older_version(alpha):
    live_watch()
    key = local.access_version_key(alpha.pk)
    keys = lambda tenant_id: ([local.access_version_key(tenant_id)], [])  # noqa: E731
    resolve_host(host(alpha), keys)
    other, stop, errors = raw_client(), threading.Event(), []

    def reader():
        while not stop.is_set():
            floor = int(other.get(key))  # the version known before this read began
            _, extra = resolve_host(host(alpha), keys)
            if key in extra and int(extra[key]) < floor:
                errors.append((floor, extra[key]))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(200):
        other.incr(key)
        time.sleep(0.002)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
