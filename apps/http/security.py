"""Content-Security-Policy for the pages a browser renders: both admin sites
and the API docs.

A few fixed headers on a few paths, so written here rather than adding a
dependency: the admin and the docs load scripts only from this origin (the
docs through drf-spectacular's split view, whose start-up script is a file,
not inline), and no page may be framed.
"""

from __future__ import annotations

from django.conf import settings

# The policy itself is a setting (CONTENT_SECURITY_POLICY, config/settings/security.py).
BROWSER_PAGE_PREFIXES = ("/admin/", "/api/v1/docs", "/invitations/", "/password/")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path_info.startswith(BROWSER_PAGE_PREFIXES):
            response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response
