"""Error views, and the base class of every tenant API view."""

from __future__ import annotations

from django.utils.cache import patch_vary_headers
from rest_framework.views import APIView

from apps.http.problems import problem_response
from apps.ratelimit.throttles import TenantRateThrottle, rate_limit_headers
from apps.tenancy.middleware import client_key
from apps.tenancy.routers import tenant_write_alias

from .authentication import BearerAuthentication, TenantSessionAuthentication
from .permissions import TenantRole


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


class TenantAPIView(APIView):
    """Base of the tenant API: Bearer or session auth, role checks, and
    Idempotency-Key on POST (the stored record commits with the change)."""

    authentication_classes = [BearerAuthentication, TenantSessionAuthentication]
    permission_classes = [TenantRole]
    throttle_classes = [TenantRateThrottle]
    rate_scope: str | None = None  # "search", "exports", "bulk": a lower limit of their own

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        rate_limit_headers(request, response)
        # Per-tenant, per-caller data: browsers may keep it but must revalidate
        # (ETag -> 304); shared caches must not store it.
        if request.method in ("GET", "HEAD") and response.status_code in (200, 304):
            response.setdefault("Cache-Control", "private, no-cache")
        else:
            response.setdefault("Cache-Control", "no-store")
        patch_vary_headers(response, ("Authorization", "Cookie"))
        return response

    def dispatch(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or key is None or getattr(request, "tenant", None) is None:
            return super().dispatch(request, *args, **kwargs)
        from apps.idempotency.services import run_idempotent

        alias = tenant_write_alias(request.tenant)
        client = client_key(request) or "anonymous"
        return run_idempotent(
            request=request, key=key, client=client, alias=alias,
            handler=lambda: super(TenantAPIView, self).dispatch(request, *args, **kwargs),
        )
