"""Request-path middleware: request ids and user context."""

from __future__ import annotations

import logging
import time

from django.http import HttpRequest, HttpResponse

from .context import SYSTEM, Actor, actor_var, clean_request_id, request_id_var, tenant_var, trace_ids_var, user_var

logger = logging.getLogger("apps.request")

REQUEST_ID_HEADER = "X-Request-ID"


class RequestIdMiddleware:
    """Take the caller's X-Request-ID (or make one), log the request, echo it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        # Not reset on the way out: Django logs 4xx/5xx responses after the
        # middleware chain returns, and those lines need the id too. The
        # context is cleared when the next request starts (clear_request_context).
        request_id_var.set(request_id)
        started = time.perf_counter()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        if not logger.isEnabledFor(logging.INFO):
            return response  # the line would be dropped: do not build it
        logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response


def clear_request_context(**kwargs) -> None:
    """request_started receiver: nothing of the previous request's context survives."""
    request_id_var.set(None)
    tenant_var.set(None)
    user_var.set(None)
    actor_var.set(SYSTEM)
    trace_ids_var.set(None)


class UserContextMiddleware:
    """Put the authenticated user's id on the log context (after auth)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            user_var.set(str(user.pk))
            actor_var.set(Actor(type="user", user_id=user.pk))
        return self.get_response(request)
