"""What several webhook tests do."""

from __future__ import annotations

from apps.tenancy.activation import tenant_activated
from apps.tenancy.routers import tenant_write_alias
from apps.webhooks.delivery import fan_out


def fanned_out(tenant) -> None:
    """Make the deliveries of the tenant's new events, as its next run does first."""
    with tenant_activated(tenant):
        while fan_out(tenant_write_alias(tenant)):
            pass
