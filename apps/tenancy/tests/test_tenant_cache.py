"""Tenant-scoped caching: isolation, invalidation on every write path,
stampede protection, and Redis outages."""

from __future__ import annotations

import threading
import time

import pytest
from django.test import Client

from apps.tenancy import tenant_cache
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


def test_the_same_url_never_shows_another_tenants_cached_page(api, alpha, gamma):
    a, g = api(alpha, role="member"), api(gamma, role="member")
    a.post("documents", {"title": "alpha's"})
    g.post("documents", {"title": "gamma's"})
    assert [d["title"] for d in a.get("documents").json()["results"]] == ["alpha's"]  # cached now
    assert [d["title"] for d in g.get("documents").json()["results"]] == ["gamma's"]
    assert [d["title"] for d in a.get("documents").json()["results"]] == ["alpha's"]


def titles(client) -> list[str]:
    return [d["title"] for d in client.get("documents?ordering=title").json()["results"]]


def test_every_write_path_invalidates_lists_details_and_usage(api, alpha):
    client = api(alpha, role="admin")
    first = client.post("documents", {"title": "one"}).json()
    assert titles(client) == ["one"] and client.get(f"documents/{first['id']}").json()["title"] == "one"
    assert client.get("usage").json()["quotas"]["documents"]["used"] == 1

    client.post("documents/bulk", {"documents": [{"title": "two"}, {"title": "three"}]})
    assert titles(client) == ["one", "three", "two"]
    assert client.get("usage").json()["quotas"]["documents"]["used"] == 3

    client.patch(f"documents/{first['id']}", {"title": "uno"}, if_match='"1"')
    assert client.get(f"documents/{first['id']}").json()["title"] == "uno" and "uno" in titles(client)

    client.delete(f"documents/{first['id']}", if_match='"2"')
    assert client.get(f"documents/{first['id']}").status_code == 404 and "uno" not in titles(client)
    assert client.get("usage").json()["quotas"]["documents"]["used"] == 2

    admin = Client(HTTP_HOST="alpha.localhost")
    admin.post("/admin/login/?next=/admin/", {"username": "owner@alpha.test", "password": "alpha-pass"})
    admin.post("/admin/content/document/add/", {"title": "from admin", "status": "draft"})
    assert "from admin" in titles(client)

    from django.utils import timezone

    client.post("events", {"events": [{"type": "x", "timestamp": timezone.now().isoformat()}]})
    assert client.get("usage").json()["quotas"]["events_per_month"]["used"] == 1
    client.post("api-keys", {"name": "k", "scopes": ["read"]})
    assert client.get("usage").json()["quotas"]["api_keys"]["used"] == 1


def test_a_cold_key_is_computed_once_however_many_ask(alpha):
    calls, results = [], []

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return "value"

    def reader():
        with tenant_activated(alpha):
            results.append(tenant_cache.get_or_compute("stampede", "cold", compute))

    threads = [threading.Thread(target=reader) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == ["value"] * 20


def test_a_stale_key_is_recomputed_once_while_the_rest_get_the_old_value(alpha):
    calls, results = [], []
    with tenant_activated(alpha):
        tenant_cache.get_or_compute("stampede", "hot", lambda: "old", ttl=1)
    time.sleep(1.2)  # past the soft expiry (1 s +- 10%), within the grace period

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return "new"

    def reader():
        with tenant_activated(alpha):
            results.append(tenant_cache.get_or_compute("stampede", "hot", compute, ttl=1))

    threads = [threading.Thread(target=reader) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results.count("new") == 1 and results.count("old") == 19


def test_http_caching_headers(api, alpha):
    client = api(alpha, role="member")
    doc = client.post("documents", {"title": "cached"}).json()
    detail = client.get(f"documents/{doc['id']}")
    assert detail["Cache-Control"] == "private, no-cache"
    assert "Authorization" in detail["Vary"] and "Cookie" in detail["Vary"]
    assert detail["ETag"] == '"1"' and detail["Last-Modified"]
    listing = client.get("documents")
    assert listing["ETag"].startswith('W/"')
    assert client.get("documents", if_none_match=listing["ETag"]).status_code == 304
    assert client.post("documents", {"title": "x"})["Cache-Control"] == "no-store"


DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_with_redis_down_requests_are_still_served(api, alpha, settings):
    client = api(alpha, role="member")  # made while Redis is up
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": DEAD_REDIS}}
    settings.REDIS_URL = DEAD_REDIS
    from apps.ratelimit import buckets

    try:
        created = client.post("documents", {"title": "during the outage"})
        assert created.status_code == 201
        assert client.get(f"documents/{created.json()['id']}").status_code == 200
        listing = client.get("documents")
        assert listing.status_code == 200 and listing["RateLimit-Limit"]
        assert client.get("usage").status_code == 200
        assert buckets.take("outage-test", per_minute=5).backend == "local"
    finally:
        buckets._script.cache_clear()


def test_one_tenants_invalidation_leaves_another_tenants_entries_alone(alpha, gamma):
    computed = []

    def cached(tenant, value):
        with tenant_activated(tenant):
            return tenant_cache.get_or_compute("docs", "same-key", lambda: computed.append(value) or value)

    assert (cached(alpha, "alpha's"), cached(gamma, "gamma's")) == ("alpha's", "gamma's")
    with tenant_activated(alpha):
        tenant_cache.invalidate("docs")
    assert cached(gamma, "recomputed") == "gamma's"  # still its own entry, not recomputed
    assert cached(alpha, "alpha's again") == "alpha's again"
    assert computed == ["alpha's", "gamma's", "alpha's again"]
    # Every entry sits under its own tenant's id (from the active tenant, not the caller).
    from apps.caching import versioned

    keys = [k.decode() for k in versioned.client().scan_iter(f"{versioned.key_prefix()}:t*:docs:g*same-key")]
    assert {k.split(":")[2] for k in keys} == {f"t{alpha.pk}", f"t{gamma.pk}"}


def test_a_tenant_change_refreshes_only_its_own_host_lookup(alpha, gamma, django_assert_num_queries):
    from apps.tenancy.selectors import tenant_for_hostname
    from apps.tenancy.services import tenant_set_status

    assert tenant_for_hostname("alpha.localhost") == alpha and tenant_for_hostname("gamma.localhost") == gamma
    tenant_set_status(tenant=alpha, status="suspended")
    with django_assert_num_queries(0):
        assert not tenant_for_hostname("gamma.localhost").is_suspended
    with django_assert_num_queries(1):
        assert tenant_for_hostname("alpha.localhost").is_suspended


def test_a_cached_document_read_makes_few_redis_round_trips(api, alpha):
    """Host lookup, rate limit (with the plan) and the entry; measured to keep
    it from growing (it was 5 warm, 8 cold before versions and entries were
    read in one script)."""
    from tests.redis_faults import counting_round_trips

    client = api(alpha, role="member")
    path = f"documents/{client.post('documents', {'title': 't'}).json()['id']}"
    with counting_round_trips() as cold:
        assert client.get(path).status_code == 200
    with counting_round_trips() as warm:
        assert client.get(path).status_code == 200
    assert len(warm) <= 4 and len(cold) <= 5, (len(warm), len(cold), [c[:60] for c in warm])
