"""The tenant API: Django REST framework, the OpenAPI schema, request bounds."""

from __future__ import annotations

from .environment import env_int

# --- API ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.api.authentication.BearerAuthentication",
        "apps.api.authentication.TenantSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.api.permissions.TenantRole"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.api.parsers.BoundedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "apps.api.pagination.TenantCursorPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.http.problems.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SaaS platform tenant API",
    "DESCRIPTION": (
        "The API of one tenant, served on the tenant's host under /api/v1/. Authenticate with "
        "`Authorization: Bearer <API key or token>` (POST /api/v1/auth/token gives a token for a member's "
        "email and password). Errors are RFC 9457 problem details. POST accepts an `Idempotency-Key` header."
    ),
    "VERSION": "1.0.0",
    # 3.1 (JSON Schema 2020-12) can say what a free-form JSON object may hold
    # (propertyNames); 3.0 cannot.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH bodies are validated as declared (optional fields say so), not
    # as "everything optional", which is what a split PATCH component claims.
    "COMPONENT_SPLIT_PATCH": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.api.schema.document_problem_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "DocumentStatusEnum": "apps.content.models.Document.Status",
        "MemberRoleEnum": "apps.accounts.models.Membership.Role",
        "ExportStatusEnum": "apps.reports.models.ExportRequest.Status",
        "WebhookDeliveryStateEnum": "apps.webhooks.models.Delivery.State",
        "WebhookEventTypeEnum": "apps.webhooks.catalogue.EVENT_TYPES",
        "WebhookEventTypeOrAllEnum": "apps.api.endpoints.webhooks.EVENT_TYPE_CHOICES",
    },
    # The events a tenant's endpoints receive, one per type, with their payloads
    # (the catalogue: apps/webhooks/catalogue.py).
    "WEBHOOKS": "apps.webhooks.catalogue.OPENAPI_WEBHOOKS",
}
# Bulk requests (500 documents, 1,000 events) fit; larger bodies get 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024, minimum=1, unit="bytes")
IDEMPOTENCY_KEY_SECONDS = 24 * 3600
# JSON bodies nested deeper than this get 400 before any view parses them (apps/api/parsers.py).
API_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 32, minimum=1)
