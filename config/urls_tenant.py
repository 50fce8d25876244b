"""URLs of a tenant's host: <slug>.PLATFORM_DOMAIN."""

from django.http import JsonResponse
from django.urls import include, path

from apps.accounts import pages
from apps.backoffice.sites import tenant_admin_site

from .urls_common import handler400, handler403, handler404, handler500  # noqa: F401


def index(request):
    return JsonResponse({"tenant": request.tenant.slug, "name": request.tenant.name, "admin": "/admin/",
                         "api": "/api/v1/", "docs": "/api/v1/docs"})


urlpatterns = [
    path("", index, name="tenant-index"),
    path("invitations/accept", pages.invitation_accept_page, name="invitation-accept-page"),
    path("password/reset", pages.password_reset_page, name="password-reset-page"),
    path("password/reset/confirm", pages.password_reset_confirm_page, name="password-reset-confirm-page"),
    path("admin/", tenant_admin_site.urls),
    path("api/v1/", include("config.api_v1")),
]
