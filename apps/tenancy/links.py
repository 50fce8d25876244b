"""Absolute links to a tenant's host, for emails and downloads.

Built from one configured template, TENANT_BASE_URL (``https://{host}`` in
production; ``http://{host}:8000`` under ``bin/dev up``), so a link carries
the scheme and port people actually reach the platform on.
"""

from __future__ import annotations

from django.conf import settings

from .selectors import tenant_primary_hostname


def tenant_base_url(tenant) -> str:
    return settings.TENANT_BASE_URL.format(host=tenant_primary_hostname(tenant) or "").rstrip("/")


def tenant_url(tenant, path: str) -> str:
    return tenant_base_url(tenant) + "/" + path.lstrip("/")
