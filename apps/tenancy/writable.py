"""Whether a tenant accepts writes now, for code that writes outside a request.

Requests and tasks read ``Tenant.accepts_writes`` on the row they resolved;
commands that write into a tenant's schema ask here, so that they can wait
for a move's freeze to end or say why they did not write.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .models import Tenant


class TenantFrozen(RuntimeError):
    """The tenant does not accept writes now (a move's freeze, or a read-only shard)."""


def tenant_writable(tenant: Tenant, *, wait_seconds: float = 0.0, poll_seconds: float = 0.5,
                    report: Callable[[str], None] = lambda line: None) -> Tenant:
    """``tenant`` fresh from the registry once it accepts writes.

    For commands that write into a tenant's schema: a frozen tenant is being
    switched to another shard, and a write now would meet a locked or
    renamed schema. Waits up to ``wait_seconds`` (0: not at all), then
    raises TenantFrozen with a message for the operator. A freeze is a
    lease, so the wait ends at the lease's deadline at the latest.
    """
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        fresh = Tenant.objects.select_related("shard").get(pk=tenant.pk)
        if fresh.accepts_writes:
            return fresh
        if fresh.writes_frozen:
            why = f"its writes are frozen until {fresh.writes_frozen_until:%H:%M:%S} UTC by a move (renewed while it runs)"
        else:
            why = f"its shard {fresh.shard.name} is read-only"
        if time.monotonic() >= deadline:
            hint = "" if wait_seconds else " Try again later, or pass --wait SECONDS."
            raise TenantFrozen(f"Tenant '{fresh.slug}' does not accept writes now: {why}; nothing was written.{hint}")
        if not said:
            report(f"{fresh.slug}: {why}; waiting up to {wait_seconds:g}s")
            said = True
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
