"""Activate a tenant outside a request (commands, tasks, scripts).

The single entry point for "run this as tenant X": the schema on the tenant's
connection and the log context, both restored on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

from apps.observability.context import tenant_var

from .models import Tenant


@contextmanager
def tenant_activated(tenant: Tenant) -> Iterator[Tenant]:
    previous = connection.tenant
    token = tenant_var.set(tenant.slug)
    connection.set_tenant(tenant)
    try:
        yield tenant
    finally:
        connection.set_tenant(previous)
        tenant_var.reset(token)
