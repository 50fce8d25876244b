"""URLs of the platform (operators') host: PLATFORM_DOMAIN."""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path

from .urls_common import handler400, handler403, handler404, handler500  # noqa: F401


def index(request):
    return JsonResponse({"service": "saas-platform", "admin": "/admin/", "health": "/healthz", "metrics": "/metrics"})


urlpatterns = [
    path("", index, name="platform-index"),
    # The operator console: pages of the operator admin, before its catch-all.
    path("admin/console/", include("apps.backoffice.console.urls")),
    path("admin/", admin.site.urls),
]
