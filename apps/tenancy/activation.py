"""Activate a tenant: the router's context plus the schema on its shard.

The single entry point for "run this as tenant X", used by the request
middleware, commands, scripts and (later) task workers. Activation sets the
schema on the tenant's shard connections (primary and replica; django-tenants
issues one lazy `SET search_path` per switch) and deactivation puts them back
on the empty public schema, so that nothing of one unit of work's tenant is
left on a pooled connection for the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

from apps.observability.context import tenant_var

from . import planes
from .context import active_tenant_var, primary_pinned_until_var, wrote_var
from .models import Tenant


def _tenant_aliases(tenant: Tenant) -> list[str]:
    if tenant.shard is None:
        return []
    aliases = [tenant.shard.alias]
    replica = planes.replica_alias(tenant.shard.alias)
    if replica:
        aliases.append(replica)
    return aliases


def activate(tenant: Tenant) -> list:
    """Activate ``tenant``; returns tokens for ``deactivate``."""
    for alias in _tenant_aliases(tenant):
        connection = connections[alias]
        if connection.schema_name != tenant.schema_name:
            connection.set_tenant(tenant)
    return [
        (active_tenant_var, active_tenant_var.set(tenant)),
        (tenant_var, tenant_var.set(tenant.slug)),
        (primary_pinned_until_var, primary_pinned_until_var.set(0.0)),
        (wrote_var, wrote_var.set(False)),
    ]


def deactivate(tenant: Tenant, tokens: list, *, keep_log_context: bool = False) -> None:
    """Undo ``activate``. ``keep_log_context`` leaves the tenant on log lines
    (Django logs a request's 4xx/5xx after the middleware has returned; the
    next request clears it)."""
    for alias in _tenant_aliases(tenant):
        connections[alias].set_schema_to_public()
    for var, token in reversed(tokens):
        if keep_log_context and var is tenant_var:
            continue
        var.reset(token)


@contextmanager
def tenant_activated(tenant: Tenant) -> Iterator[Tenant]:
    previous = active_tenant_var.get()
    tokens = activate(tenant)
    try:
        yield tenant
    finally:
        deactivate(tenant, tokens)
        if previous is not None:
            # Nested activation: put the outer tenant's schema back.
            for alias in _tenant_aliases(previous):
                connections[alias].set_tenant(previous)
