"""Load shedding: each worker process admits a bounded number of requests at
once, and sheds the least important first.

With gunicorn's threaded workers, SHED_CAPACITY threads serve requests. Low
priority work (search, exports, bulk writes) may occupy at most
SHED_SHARES["low"] of them, normal work SHED_SHARES["normal"]; critical
requests (reads of documents, the caller's identity, usage, token exchange)
may use all. So under overload a flood of expensive requests is answered 503
with Retry-After while critical reads still find a free thread at once.
"""

from __future__ import annotations

import re
import threading

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.api.problems import problem_response
from apps.observability import metrics

CRITICAL = "critical"
NORMAL = "normal"
LOW = "low"

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


class LoadSheddingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self._lock = threading.Lock()
        self.in_flight = 0

    def _admit(self, priority: str) -> bool:
        limit = settings.SHED_CAPACITY * settings.SHED_SHARES[priority]
        with self._lock:
            if self.in_flight >= limit:
                return False
            self.in_flight += 1
            return True

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
        if not self._admit(priority):
            metrics.shed_requests.labels(priority=priority).inc()
            return problem_response(
                503, code="overloaded", title="Temporarily overloaded",
                detail="The server is busy; this request was shed to keep critical requests fast. Retry shortly.",
                headers={"Retry-After": "1"},
            )
        try:
            return self.get_response(request)
        finally:
            with self._lock:
                self.in_flight -= 1
