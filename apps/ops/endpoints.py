"""The operational endpoints: /healthz, /readyz and /metrics on any host.

Tier 5: the readings behind them (apps/ops/health.py, apps/ops/collectors.py)
look at the kernel's tables and servers, which the observability core below
must not import.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

from apps.http.problems import problem_response

from . import health
from .collectors import platform_exposition


def healthz(request: HttpRequest) -> HttpResponse:
    # Liveness: the process can answer. No I/O, so a slow database never gets
    # a healthy process restarted.
    return JsonResponse({"status": "ok"})


def is_operator_request(request: HttpRequest) -> bool:
    """Did this come in on the internal listener (OPS_PORT, which no load
    balancer or ingress exposes) or with the operations token?

    The port is the listener's own (gunicorn sets SERVER_PORT from the socket
    it accepted on, not from the Host header), so a client cannot claim it.
    """
    if settings.OPS_PORT and request.META.get("SERVER_PORT") == str(settings.OPS_PORT):
        return True
    token = settings.OPS_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and given.startswith("Bearer ") and hmac.compare_digest(
        given.removeprefix("Bearer ").strip().encode(), token.encode()
    )


def readyz(request: HttpRequest) -> HttpResponse:
    status, checks = health.run_checks()
    # The check may have left the default connection broken; do not hand it to
    # the next request on this worker.
    connections["default"].close_if_unusable_or_obsolete()
    body: dict = {"status": status}
    # Load balancers only need the status code; which dependency is down, and
    # the error text naming internal hosts and ports, is for operators.
    if is_operator_request(request):
        body["down"] = sorted(name for name, check in checks.items() if check["status"] == "down")
        body["checks"] = checks
    response = JsonResponse(body)
    response.status_code = 503 if status == "unavailable" else 200
    response["Cache-Control"] = "no-store"
    return response


def metrics(request: HttpRequest) -> HttpResponse:
    # Metrics name tenants' plans, views, queues and shards: not for anyone
    # who knows a host name. Unknown to everyone else, like any other path.
    if not is_operator_request(request):
        return problem_response(404, code="not-found", detail="Not found.")
    return HttpResponse(platform_exposition(), content_type=CONTENT_TYPE_LATEST)


OPERATIONAL_ENDPOINTS = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics,
}


class OperationalEndpointsMiddleware:
    """Answer /healthz, /readyz and /metrics on any host.

    Runs before host validation and tenant resolution: load balancers and
    kubelets call these by IP, and they must not depend on the tenant registry.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = OPERATIONAL_ENDPOINTS.get(request.path_info.rstrip("/") or "/")
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)
