"""An endpoint's health: failing since when, and disabled after too long.

An endpoint is failing from its first failed attempt after its last
success; a success clears that. One still failing WEBHOOKS_DISABLE_AFTER_SECONDS
later is disabled (its deliveries wait, none is lost) and the tenant's owners
are emailed once, through the tenant outbox in the same transaction.
Enabling it again (API or tenant admin) resumes its deliveries.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from django.conf import settings

from apps.tenancy.context import require_active_tenant

from . import metrics
from .models import Endpoint

EMAIL = "webhook_endpoint_disabled"


def endpoints_after(alias: str, results: list, now: dt.datetime) -> list[int]:
    """Update the endpoints of these attempts; returns the ids disabled now."""
    succeeded = {r.delivery.endpoint_id for r in results if r.outcome.succeeded}
    failed = {r.delivery.endpoint_id for r in results if not r.outcome.succeeded} - succeeded
    endpoints = Endpoint.objects.using(alias)
    if succeeded:
        endpoints.filter(pk__in=succeeded, failing_since__isnull=False).update(failing_since=None)
    if not failed:
        return []
    endpoints.filter(pk__in=failed, failing_since__isnull=True).update(failing_since=now)
    cutoff = now - dt.timedelta(seconds=settings.WEBHOOKS_DISABLE_AFTER_SECONDS)
    doomed = list(endpoints.filter(pk__in=failed, enabled=True, failing_since__lte=cutoff))
    if not doomed:
        return []
    endpoints.filter(pk__in=[e.pk for e in doomed], enabled=True).update(
        enabled=False, disabled_reason=Endpoint.DisabledReason.FAILING, disabled_at=now)
    for endpoint in doomed:
        _email_owners(endpoint, now)
    metrics.endpoints_disabled.inc(len(doomed))
    return [e.pk for e in doomed]


def _email_owners(endpoint: Endpoint, now: dt.datetime) -> None:
    """The owners hear of it once per disabling (the effect key names it).
    The message names the endpoint's host only: a URL may hold a token."""
    from apps.accounts.selectors import owner_emails
    from apps.notifications.tasks import send_email
    from apps.outbox.services import tenant_outbox_enqueue

    tenant = require_active_tenant()
    owners = owner_emails(tenant_id=tenant.pk)
    if not owners:
        return
    days = max(1, round((now - endpoint.failing_since).total_seconds() / 86400)) if endpoint.failing_since else 1
    tenant_outbox_enqueue(send_email, kwargs={
        "to": owners, "template": EMAIL,
        "context": {"tenant_name": tenant.name, "endpoint_id": endpoint.pk,
                    "endpoint_host": urlsplit(endpoint.url).hostname or "", "failing_days": days},
        "effect_key": f"webhook-disabled:{tenant.pk}:{endpoint.pk}:{int(now.timestamp())}",
    })


def admin_link(refs: dict, tenant_id: int | None) -> dict:
    """The email's link: the tenant admin's webhooks page (it asks for a sign-in)."""
    from apps.tenancy.links import tenant_url
    from apps.tenancy.models import Tenant

    tenant = Tenant.objects.filter(pk=tenant_id).first() if tenant_id else None
    return {"url": tenant_url(tenant, "/admin/webhooks/")} if tenant is not None else {}
