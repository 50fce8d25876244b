"""Error views: every host answers errors as problem details, never HTML."""

from __future__ import annotations

from .problems import problem_response


def not_found(request, exception=None):
    return problem_response(404, code="not-found", detail=f"Nothing is served at '{request.path}'.")


def server_error(request):
    return problem_response(
        500,
        code="internal-error",
        detail="The server failed to answer. The request id identifies it in the logs.",
        request_id=getattr(request, "request_id", None),
    )


def bad_request(request, exception=None):
    return problem_response(400, code="bad-request", detail="The request could not be understood.")


def permission_denied(request, exception=None):
    return problem_response(403, code="forbidden", detail="You may not do this.")
