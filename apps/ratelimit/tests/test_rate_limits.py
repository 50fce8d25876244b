"""Rate limits: exact under concurrency, headers, plan changes, scopes, fallback."""

from __future__ import annotations

import threading

import pytest

from apps.billing.models import Plan
from apps.billing.services import subscription_change_plan
from apps.ratelimit import buckets
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db


def test_parallel_takers_never_get_more_than_the_limit():
    results = []

    def taker():
        for _ in range(5):
            results.append(buckets.take("exactness", per_minute=30).allowed)

    threads = [threading.Thread(target=taker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 100
    assert results.count(True) == 30  # refill during the run is < 1 token (0.5/s)


def test_headers_and_429(api, alpha):
    Plan.objects.filter(code="free").update(rate_limit_per_minute=3)
    client = api(alpha, role="member")
    responses = [client.get("documents") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r["RateLimit-Remaining"] for r in responses[:3]] == ["2", "1", "0"]
    assert responses[0]["RateLimit-Limit"] == "3" and int(responses[0]["RateLimit-Reset"]) >= 0
    refused = responses[3]
    assert refused["Content-Type"] == "application/problem+json" and int(refused["Retry-After"]) >= 1
    assert refused.json()["status"] == 429


def test_a_plan_change_applies_without_a_restart(api, alpha):
    Plan.objects.filter(code="free").update(rate_limit_per_minute=2)
    client = api(alpha, role="member")
    assert [client.get("me").status_code for _ in range(3)] == [200, 200, 429]
    # A copy: the service updates the instance it is given, and alpha is shared by the session.
    subscription_change_plan(tenant=Tenant.objects.get(pk=alpha.pk), plan_code="pro")  # 1,200 per minute
    # The bucket refills at the new rate and holds the new capacity at once.
    response = client.get("me")
    assert response["RateLimit-Limit"] != "2"


def test_api_keys_and_expensive_endpoints_have_lower_limits(api, alpha):
    Plan.objects.filter(code="free").update(rate_limit_per_minute=8)
    key = api(alpha, via="key", scopes=["read"])
    statuses = [key.get("me").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]  # a key gets half its tenant's rate
    user = api(alpha, role="member")
    searches = [user.get("search?q=x").status_code for _ in range(3)]
    assert searches == [200, 200, 429]  # search: a quarter of the tenant's rate


def test_the_local_fallback_limits_too():
    local = buckets.LocalBuckets()
    allowed = [local.take("k", capacity=3, per_second=0.0)[0] for _ in range(5)]
    assert allowed == [True, True, True, False, False]
