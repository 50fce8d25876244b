"""The fairness scripts against the real Redis, in this process: park, wake,
fail open. (With real workers: tests/test_fairness.py.)"""

from __future__ import annotations

import uuid

import pytest

from apps.jobs import fairness
from apps.jobs.tasks import tenant_probe
from tests.redis_faults import counting_connects
from tests.support import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(monkeypatch):
    """Tenant limits without touching the plans (the cache is what acquire reads)."""
    set_limits = {}
    monkeypatch.setattr(fairness, "tenant_limit", lambda tenant_id: set_limits.get(tenant_id, 0))
    yield set_limits
    for key in fairness._client().scan_iter(f"{fairness._prefix()}:*"):
        fairness._client().delete(key)


def delivered(tenant_id: int):
    """tenant_probe's request as a worker would see it for a message off the ``default`` queue."""
    task_id = str(uuid.uuid4())
    tenant_probe.push_request(id=task_id, delivery_info={"routing_key": "default"}, args=["k", "l", 0.0],
                              kwargs={}, headers={"tenant_id": tenant_id, "request_id": "req-1"}, retries=2,
                              called_directly=False)
    return task_id


def test_over_the_limit_a_message_is_parked_and_the_release_wakes_it(limits, tenants, monkeypatch):
    alpha, gamma = tenants["alpha"].pk, tenants["gamma"].pk
    limits[alpha] = 1
    republished = []
    monkeypatch.setattr(fairness, "_republish", lambda raw: republished.append(raw) or
                        fairness._client().zrem(fairness._republishing_key(), raw))
    try:
        delivered(alpha)
        first = fairness.acquire(tenant_probe, tenant_id=alpha)
        parked_id = delivered(alpha)
        assert fairness.acquire(tenant_probe, tenant_id=alpha) is False
        delivered(gamma)
        assert fairness.acquire(tenant_probe, tenant_id=gamma) is None  # gamma's plan: no limit
    finally:
        for _ in range(3):
            tenant_probe.pop_request()
    assert fairness.parked_count("default", alpha) == 1 and fairness.in_flight("default", alpha) == 1
    assert fairness.release(first) == 1
    assert fairness.in_flight("default", alpha) == 0 and fairness.parked_count("default", alpha) == 0
    import json

    message = json.loads(republished[0])
    assert message["id"] == parked_id and message["retries"] == 2 and message["queue"] == "default"
    assert message["headers"] == {"tenant_id": alpha, "request_id": "req-1"}


def test_redis_down_means_no_limit_not_no_work(limits, tenants, settings):
    from apps.caching import health
    from apps.caching.connections import _client

    limits[tenants["alpha"].pk] = 1
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    delivered(tenants["alpha"].pk)
    try:
        with counting_connects() as first:
            assert fairness.acquire(tenant_probe, tenant_id=tenants["alpha"].pk) is None
        assert first, "the first message tried Redis"
        # The next messages do not try Redis again for a while: no connect (and
        # so no timeout to wait out) for any of them.
        with counting_connects() as next_ones:
            for _ in range(50):
                assert fairness.acquire(tenant_probe, tenant_id=tenants["alpha"].pk) is None
        assert next_ones == []
    finally:
        tenant_probe.pop_request()
        _client.cache_clear()
        health.record_success()  # the dead Redis' pause, for the tests after this one
