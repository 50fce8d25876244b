"""Error views, and the base class of every tenant API view."""

from __future__ import annotations

from django.utils.cache import patch_vary_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.settings import APISettings
from rest_framework.views import APIView

from apps.http.errors import InvalidParameters
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


def query_parameters(serializer_class):
    """Declare a handler's query parameters with a serializer (a StrictSerializer).

    The same class is the OpenAPI description of the parameters and what
    TenantAPIView validates the query string with before the handler runs
    (the values are in ``self.query``), so the two cannot disagree. A handler
    without one takes no query parameters."""

    def declare(handler):
        handler.query_serializer = serializer_class
        return extend_schema(parameters=[serializer_class])(handler)

    return declare


# The header of optimistic locking, declared once: the operations that take
# it also document 412 and 428 (apps/api/schema.py), which it decides.
IF_MATCH = OpenApiParameter(
    "If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
    description=("The ETag of the version this change is based on (from GET), or *. Without this header the "
                 "answer is 428 Precondition Required; naming any other version, 412 Precondition Failed."),
)


def validated_query(serializer_class, params) -> dict:
    """``params`` (a QueryDict) checked against ``serializer_class``; 400 naming each bad parameter."""
    errors = {name: ["Given more than once; send it once."] for name, values in params.lists() if len(values) > 1}
    if serializer_class is None:
        errors.update({name: ["Unknown query parameter: this operation takes none."]
                       for name in params if name not in errors})
    elif not errors:
        serializer = serializer_class(data=params.dict(), context={"query": True})
        if serializer.is_valid():
            return serializer.validated_data
        errors = serializer.errors
    if errors:
        raise InvalidParameters(f"Invalid query parameters: {', '.join(sorted(errors))}.", errors=errors)
    return {}


class DeclaredContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation without its ?format= override, a query parameter
    that no operation declares: the Accept header alone chooses."""

    settings = APISettings(user_settings={"URL_FORMAT_OVERRIDE": None})


class TenantAPIView(APIView):
    """Base of the tenant API: Bearer or session auth, role checks, and
    Idempotency-Key on POST (the stored record commits with the change)."""

    authentication_classes = [BearerAuthentication, TenantSessionAuthentication]
    permission_classes = [TenantRole]
    throttle_classes = [TenantRateThrottle]
    content_negotiation_class = DeclaredContentNegotiation
    rate_scope: str | None = None  # "search", "exports", "bulk": a lower limit of their own
    query: dict = {}

    def initial(self, request, *args, **kwargs):
        # After authentication, permissions and rate limits: a stranger learns
        # nothing about parameters, and refused requests count.
        super().initial(request, *args, **kwargs)
        method = request.method.lower()
        handler = getattr(self, method, None) if method in self.http_method_names else None
        if handler is not None:  # else 405, whatever the query says
            self.query = validated_query(getattr(handler, "query_serializer", None), request.query_params)

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
