"""RFC 9457 problem details: the one error format of every HTTP endpoint.

Middleware and plain Django views build responses with ``problem_response``;
DRF views reach the same format through ``exception_handler``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.observability import tracing

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://errors.saas-platform.dev/"


def problem_body(status: int, *, code: str, detail: str, title: str | None = None, **extra: Any) -> dict:
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    if tracing.ENABLED:
        trace_id = tracing.current_trace_id()
        if trace_id:
            body["trace_id"] = trace_id  # what a client quotes to support, to find this request's trace
    return body


def problem_response(
    status: int,
    *,
    code: str,
    detail: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JsonResponse:
    response = JsonResponse(
        problem_body(status, code=code, detail=detail, title=title, **extra),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's errors, services' domain errors and Django ValidationErrors -> problem details."""
    from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
    from django.core.exceptions import RequestDataTooBig
    from django.core.exceptions import ValidationError as DjangoValidationError

    from .errors import DomainError

    if isinstance(exc, DomainError):
        body = problem_body(exc.status, code=exc.code, title=exc.title, detail=exc.detail, **exc.extra)
        return Response(body, status=exc.status, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, DjangoValidationError):
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        body = problem_body(400, code="validation-error", detail="The request has invalid fields.", errors=errors)
        return Response(body, status=400, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, RequestDataTooBig):
        body = problem_body(413, code="payload-too-large", detail="The request body is too large.")
        return Response(body, status=413, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        body = problem_body(
            response.status_code,
            code="validation-error",
            detail="The request has invalid fields.",
            errors=response.data,
        )
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else str(response.data)
        code = getattr(getattr(exc, "detail", None), "code", None) or "error"
        body = problem_body(response.status_code, code=str(code).replace("_", "-"), detail=str(detail))
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response
