"""Load shedding by priority inside one worker process."""

from __future__ import annotations

import threading

from django.http import HttpResponse
from django.test import RequestFactory

from apps.ratelimit.shedding import LoadSheddingMiddleware, priority_of


def test_priorities():
    factory = RequestFactory()
    assert priority_of(factory.get("/api/v1/search?q=x")) == "low"
    assert priority_of(factory.post("/api/v1/exports")) == "low"
    assert priority_of(factory.post("/api/v1/documents/bulk")) == "low"
    assert priority_of(factory.get("/api/v1/documents/5")) == "critical"
    assert priority_of(factory.get("/api/v1/documents")) == "critical"
    assert priority_of(factory.post("/api/v1/documents")) == "normal"
    assert priority_of(factory.get("/admin/")) == "normal"


def test_saturated_worker_sheds_low_priority_first_and_keeps_critical(settings):
    settings.SHED_CAPACITY = 10  # low may use 4 slots, normal 7, critical 10
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow_view(request):
        entered.release()
        release.wait(5)
        return HttpResponse("ok")

    middleware = LoadSheddingMiddleware(slow_view)
    factory = RequestFactory()
    results = {}

    def call(name, request):
        results[name] = middleware(request).status_code

    busy = [threading.Thread(target=call, args=(f"search{i}", factory.get("/api/v1/search?q=x"))) for i in range(4)]
    for t in busy:
        t.start()
    for _ in range(4):
        entered.acquire(timeout=5)
    assert middleware(factory.get("/api/v1/search?q=x")).status_code == 503  # low: over its share
    shed = middleware(factory.get("/api/v1/exports/x"))
    assert shed.status_code == 503 and shed["Retry-After"] == "1"
    critical = threading.Thread(target=call, args=("critical", factory.get("/api/v1/documents/1")))
    critical.start()
    entered.acquire(timeout=5)  # admitted
    release.set()
    for t in busy + [critical]:
        t.join()
    assert results["critical"] == 200 and all(results[f"search{i}"] == 200 for i in range(4))
