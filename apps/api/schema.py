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
