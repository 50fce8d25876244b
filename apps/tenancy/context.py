"""The active tenant of the current unit of work (request, task, command).

A contextvar, so that it is per thread and per asyncio task, and so that the
router can refuse tenant queries when nothing is active instead of silently
using whatever schema a pooled connection last had.
"""

from __future__ import annotations

import contextvars
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Tenant

active_tenant_var: contextvars.ContextVar[Tenant | None] = contextvars.ContextVar("active_tenant", default=None)
# Monotonic time until which this unit of work reads from the primary
# (read-your-writes): set by a write, or at request start when the client
# wrote recently.
primary_pinned_until_var: contextvars.ContextVar[float] = contextvars.ContextVar("primary_pinned_until", default=0.0)
# True once this unit of work wrote tenant data (the client is then pinned
# to the primary for its next requests, too).
wrote_var: contextvars.ContextVar[bool] = contextvars.ContextVar("wrote", default=False)


class NoActiveTenant(RuntimeError):
    """A tenant model was used with no tenant active."""


def active_tenant() -> Tenant | None:
    return active_tenant_var.get()


def require_active_tenant(what: str = "tenant data") -> Tenant:
    tenant = active_tenant_var.get()
    if tenant is None:
        raise NoActiveTenant(
            f"{what} was used with no tenant active. Wrap the code in tenant_activated(tenant) "
            "(commands, scripts) or run it inside a tenant request or task."
        )
    return tenant


def pin_primary(seconds: float) -> None:
    primary_pinned_until_var.set(max(primary_pinned_until_var.get(), time.monotonic() + seconds))


def primary_pinned() -> bool:
    return primary_pinned_until_var.get() > time.monotonic()
