"""OpenAPI descriptions of the platform's own authentication classes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "apps.api.authentication.BearerAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (sk_...) or a user token (ut_..., from POST /api/v1/auth/token).",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "apps.api.authentication.TenantSessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


# --- problem responses -------------------------------------------------------
# Every operation can meet the platform's cross-cutting answers (unknown host,
# suspended tenant, authentication, rate limits, shedding, maintenance), and
# bodies and preconditions add their own. They are documented here, once, from
# what the middleware, DRF and the services actually return, so each operation
# lists every status a client has to handle, each with the problem body.

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An RFC 9457 problem details object.",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": True,
                   "description": "Field errors of a validation problem, by field name."},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}

EVERY_OPERATION = {
    "400": "Invalid query parameters, body or host name.",
    "401": "Missing, unknown, expired or revoked credentials.",
    "403": "The caller's role or key scope does not allow this, the plan's quota is reached, or the tenant is suspended.",
    "404": "No tenant is served at this host, or the object does not exist in this tenant.",
    "406": "The Accept header asks for a format the API does not produce.",
    "429": "A rate limit was reached; Retry-After says when to try again.",
    "503": "Overloaded, the tenant's data store is unavailable, or writes are paused for maintenance; see Retry-After.",
}
WITH_BODY = {
    "409": "The Idempotency-Key is in use by a request still in progress, or the change conflicts with the current state.",
    "413": "The body is larger than the server accepts.",
    "415": "The body is not JSON.",
}
CONDITIONAL = {
    "412": "If-Match does not name the current version (the ETag); read the object again.",
    "428": "This change needs an If-Match header with the version read before.",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}


def _problem(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def document_problem_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: add the problem responses."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in {"get", "head", *WRITE_METHODS}:
                continue
            statuses = dict(EVERY_OPERATION)
            if method in WRITE_METHODS:
                statuses.update(WITH_BODY)
            headers = {p.get("name", "").lower() for p in operation.get("parameters", []) if p.get("in") == "header"}
            if "if-match" in headers:
                statuses.update(CONDITIONAL)
            responses = operation.setdefault("responses", {})
            for status, description in statuses.items():
                responses.setdefault(status, _problem(description))
    return result
