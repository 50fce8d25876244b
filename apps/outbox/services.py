"""The tenant outbox. Callers have a tenant active."""

from __future__ import annotations

from django.conf import settings

from apps.jobs import outbox
from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias

from .models import TenantOutboxMessage


def tenant_outbox_enqueue(task, *, args=(), kwargs=None) -> TenantOutboxMessage:
    """Queue a tenant task in the active tenant's outbox, in the current
    transaction on its shard; it is sent after commit (or by the sweep)."""
    tenant = require_active_tenant()
    headers = {"tenant_id": tenant.pk, "tenant_slug": tenant.slug}
    return outbox.enqueue(TenantOutboxMessage, tenant_write_alias(tenant), task, args=args, kwargs=kwargs,
                          headers=headers, tenant=tenant)


# Event name -> the tasks that handle it. A domain app announces a change
# ("documents.changed") without importing the apps that react to it (search
# sits a tier above content); each reacting app subscribes its task in its
# AppConfig.ready(). One outbox row per subscriber, in the writer's transaction.
_subscribers: dict[str, list] = {}


def tenant_event_subscribe(event: str, task) -> None:
    """Have ``task`` run, with the event's arguments, for every ``event``
    emitted in a tenant (idempotent)."""
    handlers = _subscribers.setdefault(event, [])
    if all(handler.name != task.name for handler in handlers):
        handlers.append(task)


def tenant_event_emit(event: str, *, args=(), kwargs=None) -> list[TenantOutboxMessage]:
    """Queue every subscriber of ``event`` in the active tenant's outbox (see
    ``tenant_outbox_enqueue``): a rollback sends nothing, a commit is never lost."""
    return [tenant_outbox_enqueue(task, args=args, kwargs=kwargs) for task in _subscribers.get(event, ())]


# Typed events ("document.created", "member.added", ...): a domain app
# announces what changed, as items {"object_id": ..., "data": {...}}, without
# knowing who records them; the app that does (webhooks, a tier above the
# domain) registers a recorder per plane in its AppConfig.ready(). A recorder
# runs inside the announcing transaction, so what it writes commits or rolls
# back with the change: on the tenant's shard for tenant-plane changes, on the
# control database for control-plane ones (members, plans), each in its own
# change's transaction, since none spans both.
_recorders: dict[str, list] = {"tenant": [], "control": []}


def event_recorder_register(plane: str, recorder) -> None:
    """``recorder(event_type, items)`` for the tenant plane, or
    ``recorder(event_type, items, tenant_id=...)`` for the control plane (idempotent)."""
    if recorder not in _recorders[plane]:
        _recorders[plane].append(recorder)


def tenant_events_emit(event_type: str, items: list[dict]) -> None:
    """Announce tenant-plane changes inside their transaction on the active tenant's shard."""
    require_active_tenant()
    for recorder in _recorders["tenant"]:
        recorder(event_type, items)


def control_events_emit(event_type: str, items: list[dict], *, tenant_id: int) -> None:
    """Announce control-plane changes of a tenant inside their transaction on the control database."""
    for recorder in _recorders["control"]:
        recorder(event_type, items, tenant_id=tenant_id)


def tenant_outbox_sweep() -> int:
    """Send the active tenant's rows that the after-commit relay could not."""
    return outbox.relay(TenantOutboxMessage, tenant_write_alias(), older_than=outbox.sweep_delay())


def tenant_outbox_purge() -> int:
    """Delete the active tenant's rows sent more than OUTBOX_RETENTION_SECONDS
    ago (in its own schema only); unsent rows stay for the sweep."""
    return outbox.purge_sent(TenantOutboxMessage, tenant_write_alias(), older_than=outbox.retention(),
                             batch=settings.OUTBOX_PURGE_BATCH)
