"""Load shedding by measured overload: the admission controller on its own
(a fake clock), then real gunicorn servers, idle and flooded."""

from __future__ import annotations

import math
import statistics
import threading
import time

import pytest
import requests
from django.http import HttpResponse
from django.test import RequestFactory

from apps.ratelimit import shedding
from apps.ratelimit.shedding import CRITICAL, LOW, NORMAL, AdmissionController, LoadSheddingMiddleware, priority_of
from config.gunicorn_workers import QUEUE_WAIT_ENVIRON as WORKER_QUEUE_WAIT_ENVIRON
from tests.support import Gunicorn, committed_tenant, seed_searchable_documents


def test_priorities():
    factory = RequestFactory()
    assert priority_of(factory.get("/api/v1/search?q=x")) == "low"
    assert priority_of(factory.post("/api/v1/exports")) == "low"
    assert priority_of(factory.post("/api/v1/documents/bulk")) == "low"
    assert priority_of(factory.get("/api/v1/documents/5")) == "critical"
    assert priority_of(factory.get("/api/v1/documents")) == "critical"
    assert priority_of(factory.post("/api/v1/documents")) == "normal"
    assert priority_of(factory.get("/admin/")) == "normal"


def test_the_worker_and_the_middleware_name_the_same_environ_key():
    assert WORKER_QUEUE_WAIT_ENVIRON == shedding.QUEUE_WAIT_ENVIRON


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def controller(clock: Clock) -> AdmissionController:
    return AdmissionController(target=0.02, interval=0.1, capacity=8, floor=1, clock=clock)


def fill(c: AdmissionController, priority: str, n: int, waited: float) -> int:
    return sum(c.admit(priority, waited) for _ in range(n))


def test_many_requests_without_a_standing_queue_are_all_admitted():
    clock = Clock()
    c = controller(clock)
    for _ in range(50):  # 5 s of intervals, every thread busy, no wait
        assert fill(c, LOW, 8, 0.001) == 8
        for _ in range(8):
            c.release(LOW, True)
        clock.now += 0.1
    assert c.limits == {LOW: math.inf, NORMAL: math.inf}


def test_a_burst_shorter_than_an_interval_sheds_nothing():
    clock = Clock()
    c = controller(clock)
    # Long waits, but one request in the interval did not wait: no standing queue.
    assert fill(c, LOW, 6, 0.3) == 6
    assert c.admit(LOW, 0.0)
    clock.now += 0.11
    assert c.admit(LOW, 0.3)
    assert c.limits[LOW] == math.inf


def test_long_waits_while_threads_are_free_are_not_a_queue():
    # A CPU-starved machine schedules the process late: every request seems
    # to wait, but never for a thread. Shedding would not help.
    clock = Clock()
    c = controller(clock)
    for _ in range(10):
        assert c.admit(NORMAL, 0.2) and c.admit(LOW, 0.2)
        c.release(NORMAL, True)
        c.release(LOW, True)
        clock.now += 0.1
    assert c.limits == {LOW: math.inf, NORMAL: math.inf}


def test_a_standing_queue_caps_low_then_normal_never_critical_and_recovers():
    clock = Clock()
    c = controller(clock)
    assert fill(c, LOW, 6, 0.05) == 6
    assert fill(c, NORMAL, 2, 0.05) == 2
    clock.now += 0.1
    # Overloaded interval: low is capped at half of what it was doing.
    assert not c.admit(LOW, 0.05)
    assert c.limits == {LOW: 3, NORMAL: math.inf}
    for _ in range(3):
        clock.now += 0.1
        c.admit(CRITICAL, 0.05)
    assert c.limits == {LOW: 1, NORMAL: 1}  # low at its floor, then normal
    assert fill(c, CRITICAL, 20, 0.05) == 20  # critical: never shed
    assert not c.admit(NORMAL, 0.05) and not c.admit(LOW, 0.05)
    # The queue drains: caps rise by one per interval, normal first, then go.
    for _ in range(20):
        clock.now += 0.1
        c.admit(CRITICAL, 0.0)
    assert c.limits == {LOW: math.inf, NORMAL: math.inf}


def test_the_middleware_sheds_with_503_and_retry_after_and_counts_in_flight(settings):
    settings.SHED_TARGET_MS, settings.SHED_INTERVAL_MS = 20, 100
    middleware = LoadSheddingMiddleware(lambda request: HttpResponse("ok"))
    clock = Clock()
    middleware.controller.clock = clock
    factory = RequestFactory()
    waited = {shedding.QUEUE_WAIT_ENVIRON: 0.5}
    middleware.controller.limits[LOW] = 0  # as after a standing queue
    shed = middleware(factory.get("/api/v1/search?q=x", **waited))
    assert shed.status_code == 503 and shed["Retry-After"] == "1" and b"overloaded" in shed.content
    assert middleware(factory.get("/api/v1/documents/1", **waited)).status_code == 200
    assert middleware.controller.in_flight == {CRITICAL: 0, NORMAL: 0, LOW: 0}
    # Without a measured wait (no queue-timed worker) nothing is shed.
    middleware = LoadSheddingMiddleware(lambda request: HttpResponse("ok"))
    assert all(middleware(factory.get("/api/v1/search?q=x")).status_code == 200 for _ in range(50))


# --- real gunicorn ----------------------------------------------------------

@pytest.fixture(scope="module")
def loaded_tenant(tenants, django_db_blocker):
    """A committed tenant with enough documents that a search takes a while,
    and a plan rate limit that never binds; yields its request headers."""
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token
    from apps.billing.models import Plan
    from apps.tenancy.activation import tenant_activated

    with django_db_blocker.unblock(), committed_tenant("shedding") as tenant:
        Plan.objects.filter(code="free").update(rate_limit_per_minute=10_000_000)
        try:
            with tenant_activated(tenant):
                doc_id = seed_searchable_documents(2000, words=200)
            owner = User.objects.get(email="owner@shedding.test")
            yield {"headers": {"Host": "shedding.localhost",
                               "Authorization": f"Bearer {issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)}"},
                   "doc_id": doc_id}
        finally:
            Plan.objects.filter(code="free").update(rate_limit_per_minute=120)


def hammer(url_paths: list[str], headers: dict, *, clients: int, seconds: float, stop: threading.Event | None = None,
           shed: list | None = None):
    """``clients`` threads, each on its own keep-alive connection (a
    Session), requesting ``url_paths`` in turn; returns (status, seconds).
    The first 503 answer is appended to ``shed``."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(offset: int):
        session = requests.Session()
        n = offset
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            started = time.monotonic()
            try:
                response = session.get(url_paths[n % len(url_paths)], headers=headers, timeout=10)
                status = response.status_code
            except requests.RequestException:
                status = 0
            if status == 503 and shed is not None and not shed:
                shed.append(response)
            with lock:
                results.append((status, time.monotonic() - started))
            n += 1
        session.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 15)
    return results


@pytest.mark.live
def test_an_idle_server_never_sheds_one_client_on_eight_keepalive_connections(loaded_tenant):
    # Ordinary traffic of every priority from one client; the server's
    # defaults. Counting busy threads shed 131 to 423 of these per 10 s.
    with Gunicorn(workers=2) as server:
        paths = [f"{server.url}{p}" for p in (
            "/api/v1/me", "/api/v1/members", f"/api/v1/documents/{loaded_tenant['doc_id']}",
            "/api/v1/documents?page_size=5", "/api/v1/search?q=alpha&limit=5", "/api/v1/usage")]
        results = hammer(paths, loaded_tenant["headers"], clients=8, seconds=5)
    statuses = [s for s, _ in results]
    print(f"\n{len(statuses)} requests in 5 s on 8 connections: {statuses.count(503)} shed")
    assert statuses.count(503) == 0
    assert set(statuses) == {200} and len(statuses) > 100


def flooded(loaded_tenant, *, shed: bool) -> dict:
    """32 connections flooding search (low priority) on one worker with 8
    threads while 2 connections read a document (critical)."""
    env = {"GUNICORN_THREADS": "8", "SHED_ENABLED": "1" if shed else "0", "TENANT_CACHE_ENABLED": "0",
           "LOG_LEVEL": "WARNING"}
    with Gunicorn(workers=1, env=env) as server:
        stop = threading.Event()
        flood: list = []
        shed_responses: list = []
        flooder = threading.Thread(target=lambda: flood.extend(hammer(
            [f"{server.url}/api/v1/search?q=alpha%20beta%20-kappa&limit=50"], loaded_tenant["headers"],
            clients=32, seconds=8, stop=stop, shed=shed_responses)))
        flooder.start()
        time.sleep(1)  # let the queue stand
        critical = hammer([f"{server.url}/api/v1/documents/{loaded_tenant['doc_id']}"], loaded_tenant["headers"],
                          clients=2, seconds=5)
        stop.set()
        flooder.join(30)
    latencies = sorted(t for s, t in critical if s == 200)
    return {"critical_statuses": [s for s, _ in critical], "critical_p50": statistics.median(latencies),
            "critical_p99": latencies[int(len(latencies) * 0.99) - 1] if latencies else None,
            "flood_statuses": [s for s, _ in flood], "shed_response": shed_responses[0] if shed_responses else None}


@pytest.mark.live
def test_overload_sheds_search_and_keeps_critical_reads_fast(loaded_tenant):
    unshed = flooded(loaded_tenant, shed=False)
    shed = flooded(loaded_tenant, shed=True)
    for name, run in (("shedding off", unshed), ("shedding on", shed)):
        flood = run["flood_statuses"]
        print(f"\n{name}: critical p50 {run['critical_p50'] * 1000:.0f} ms p99 {run['critical_p99'] * 1000:.0f} ms "
              f"({len(run['critical_statuses'])} reads); search {flood.count(200)} answered, {flood.count(503)} shed")
    assert set(unshed["flood_statuses"]) == {200}
    assert set(shed["critical_statuses"]) == {200}  # critical reads are never shed
    assert shed["flood_statuses"].count(503) > shed["flood_statuses"].count(200)
    assert shed["flood_statuses"].count(200) > 0  # low priority is capped, not starved
    # Loose: the 503s themselves still cost this one process CPU (measured
    # about 100 ms against 210 ms; the benchmark has steadier figures).
    assert shed["critical_p50"] < unshed["critical_p50"] * 0.7
    r = shed["shed_response"]
    assert r is not None and r.headers["Retry-After"] == "1"
    assert r.headers["Content-Type"] == "application/problem+json" and r.json()["type"].endswith("/overloaded")
