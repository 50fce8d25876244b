"""Load shedding by measured overload, least important work first.

The signal is queueing delay, as in CoDel: how long each request waited for
a worker thread (config/gunicorn_workers.py puts it in the WSGI environ). A
burst makes a short queue that drains by itself; overload makes a standing
queue, seen as a *minimum* wait above SHED_TARGET_MS over a whole
SHED_INTERVAL_MS in which every thread (SHED_CAPACITY) was taken. Counting
busy threads instead would shed a lone client that simply keeps eight
connections open to an idle server.

What is done about it is adaptive concurrency, as in Envoy's filter: while
the delay stands above target, the requests of a priority a process works on
at once are capped, and the cap halved each interval (low priority first,
then normal, each down to SHED_MIN_CONCURRENCY so nothing starves); each
interval without a standing queue raises it by one (normal first) until it
is above SHED_CAPACITY again, i.e. no cap. Requests over the cap get 503 with
Retry-After before any database work, which also drains the queue fast.
Critical requests (reads of documents, the caller's identity, usage, token
exchange) are never shed: they get every thread the others leave.

Without a measured wait (another worker class, the test client) nothing is
ever shed.
"""

from __future__ import annotations

import math
import re
import threading
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.http.problems import problem_response
from apps.observability import metrics

CRITICAL = "critical"
NORMAL = "normal"
LOW = "low"
# Capped in this order as overload persists; relieved in the reverse order.
SHEDDABLE = (LOW, NORMAL)

# Set by config/gunicorn_workers.QueueTimedThreadWorker.
QUEUE_WAIT_ENVIRON = "saas.queue_wait_seconds"

_LOW = re.compile(r"^/api/v1/(search|exports|documents/bulk)")
_CRITICAL_READS = re.compile(r"^/api/v1/(documents(/\d+)?|me|usage)/?$")


def priority_of(request: HttpRequest) -> str:
    path = request.path_info
    if _LOW.match(path):
        return LOW
    if request.method in ("GET", "HEAD") and _CRITICAL_READS.match(path):
        return CRITICAL
    if path.startswith("/api/v1/auth/token"):
        return CRITICAL
    return NORMAL


class AdmissionController:
    """One process's admission state. Thread-safe; ``clock`` for tests."""

    def __init__(self, *, target: float, interval: float, capacity: int, floor: int, clock=time.monotonic):
        self.target, self.interval, self.capacity, self.floor = target, interval, capacity, floor
        self.clock = clock
        self._lock = threading.Lock()
        self.limits: dict[str, float] = {p: math.inf for p in SHEDDABLE}
        self.in_flight = {p: 0 for p in (CRITICAL, *SHEDDABLE)}
        # Threads taken by requests here, shed ones included, and the most
        # at once this interval.
        self.occupied = 0
        self._peak = 0
        self._interval_end = clock() + interval
        self._min_wait = math.inf

    def admit(self, priority: str, waited: float) -> bool:
        """Whether to serve the request; either way call release() after."""
        with self._lock:
            self._observe(waited)
            self.occupied += 1
            self._peak = max(self._peak, self.occupied)
            if self.in_flight[priority] >= self.limits.get(priority, math.inf):
                return False
            self.in_flight[priority] += 1
            return True

    def release(self, priority: str, admitted: bool) -> None:
        with self._lock:
            self.occupied -= 1
            if admitted:
                self.in_flight[priority] -= 1

    def _observe(self, waited: float) -> None:
        now = self.clock()
        if now >= self._interval_end:
            # A request waits for a thread only when every thread is taken; a
            # long wait while some were free is the machine being slow to
            # schedule this process (CPU starved), which shedding cannot fix.
            # Checked to start shedding only: once shedding, threads spend
            # most of their time outside this middleware (in gunicorn, on the
            # 503s), so the count here no longer shows them taken.
            shedding = any(limit != math.inf for limit in self.limits.values())
            self._adjust(standing_queue=math.inf > self._min_wait > self.target
                         and (shedding or self._peak >= self.capacity))
            self._interval_end = now + self.interval
            self._min_wait = math.inf
            self._peak = self.occupied
        self._min_wait = min(self._min_wait, waited)

    def _adjust(self, *, standing_queue: bool) -> None:
        if standing_queue:
            for priority in SHEDDABLE:
                if self.limits[priority] > self.floor:
                    # From what it is doing now: a cap above that would not bite.
                    current = min(self.limits[priority], max(self.in_flight[priority], 1))
                    self.limits[priority] = max(self.floor, current // 2)
                    return
            return
        for priority in reversed(SHEDDABLE):
            if self.limits[priority] != math.inf:
                self.limits[priority] += 1
                if self.limits[priority] > self.capacity:
                    self.limits[priority] = math.inf
                return


class LoadSheddingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.controller = AdmissionController(
            target=settings.SHED_TARGET_MS / 1000, interval=settings.SHED_INTERVAL_MS / 1000,
            capacity=settings.SHED_CAPACITY, floor=settings.SHED_MIN_CONCURRENCY)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        metrics.requests_in_flight.inc()
        try:
            return self._admitted(request)
        finally:
            metrics.requests_in_flight.dec()

    def _admitted(self, request: HttpRequest) -> HttpResponse:
        if not settings.SHED_ENABLED:
            return self.get_response(request)
        priority = priority_of(request)
        admitted = self.controller.admit(priority, request.META.get(QUEUE_WAIT_ENVIRON, 0.0))
        try:
            if admitted:
                return self.get_response(request)
            metrics.shed_requests.labels(priority=priority).inc()
            return problem_response(
                503, code="overloaded", title="Temporarily overloaded",
                detail="The server is busy; this request was shed to keep critical requests fast. Retry shortly.",
                headers={"Retry-After": "1"},
            )
        finally:
            self.controller.release(priority, admitted)
