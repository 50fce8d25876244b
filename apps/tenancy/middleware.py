"""Resolve the tenant from the Host header and activate its schema."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import set_urlconf

from apps.api.problems import problem_response
from apps.observability.context import tenant_var

from .selectors import tenant_for_hostname


class TenantMiddleware:
    """Hostname -> tenant (cached), then ``SET search_path`` once.

    Written instead of subclassing django-tenants' TenantMainMiddleware because
    the platform needs JSON errors for unknown hosts and suspended tenants, a
    cached lookup, and a reset after the response so that nothing of one
    request's tenant survives on the worker's connection into the next.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            hostname = request.get_host().rsplit(":", 1)[0].lower()
        except DisallowedHost:
            return problem_response(
                400, code="invalid-host", detail="This host name is not served by the platform."
            )

        # Registry lookups (on a cache miss) read the public schema.
        connection.set_schema_to_public()
        tenant = tenant_for_hostname(hostname)
        if tenant is None:
            return problem_response(
                404, code="unknown-tenant", detail=f"No tenant is served at '{hostname}'."
            )
        if tenant.is_suspended:
            return problem_response(
                403,
                code="tenant-suspended",
                title="Tenant suspended",
                detail=f"The tenant '{tenant.slug}' is suspended. Contact the platform operators to restore access.",
            )

        tenant.domain_url = hostname
        request.tenant = tenant
        connection.set_tenant(tenant)
        if tenant.is_public:
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            set_urlconf(request.urlconf)
        tenant_var.set(None if tenant.is_public else tenant.slug)
        try:
            return self.get_response(request)
        finally:
            # Lazy: no query now; the next request's set_tenant decides the path.
            connection.set_schema_to_public()
            set_urlconf(None)
