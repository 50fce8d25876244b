"""Transactional outbox: a task is written as a row in the same transaction as
the change that causes it, sent after commit, and swept later if sending
failed (a broker down at commit time loses nothing; a rollback sends nothing).

Sending is at-least-once (the relay and the sweep may both send a row in a
rare race, and a crash between send and mark resends); the row id is the task
id and the tasks are idempotent, so effects still happen once.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.observability.context import request_id_var, user_var

logger = logging.getLogger(__name__)


def publish(message) -> None:
    """Send one outbox row to the broker (no publish retries: the sweep retries)."""
    from config.celery_app import app

    app.send_task(message.task_name, args=message.args, kwargs=message.kwargs, headers=message.headers,
                  task_id=str(message.id), retry=False)


def enqueue(model, alias: str, task, *, args=(), kwargs=None, headers=None, tenant=None):
    """Write an outbox row on ``alias`` (inside the caller's transaction) and
    send it once that transaction commits. A tenant outbox row is relayed
    with its ``tenant`` active: the commit may come after the request's
    tenant was deactivated."""
    all_headers = {"request_id": request_id_var.get(), "user_id": user_var.get(), **(headers or {})}
    message = model.objects.using(alias).create(
        task_name=task.name, args=list(args), kwargs=dict(kwargs or {}), headers=all_headers
    )

    def after_commit() -> None:
        if tenant is None:
            relay(model, alias, [message.pk])
            return
        from apps.tenancy.activation import tenant_activated

        with tenant_activated(tenant):
            relay(model, alias, [message.pk])

    transaction.on_commit(after_commit, using=alias)
    return message


def relay(model, alias: str, ids=None, *, older_than: dt.timedelta | None = None, limit: int = 500) -> int:
    """Send unsent rows (these ``ids``, or all older than ``older_than``)."""
    sent = 0
    with transaction.atomic(using=alias):
        rows = model.objects.using(alias).select_for_update(skip_locked=True).filter(sent_at__isnull=True)
        if ids is not None:
            rows = rows.filter(pk__in=ids)
        if older_than is not None:
            rows = rows.filter(created_at__lt=timezone.now() - older_than)
        for message in rows.order_by("created_at")[:limit]:
            try:
                publish(message)
            except Exception as exc:  # broker down: keep the row for the sweep
                message.attempts += 1
                message.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                message.save(update_fields=["attempts", "last_error"])
                logger.warning("outbox send failed; the sweep will retry",
                               extra={"task": message.task_name, "error": message.last_error[:200]})
                break
            message.sent_at = timezone.now()
            message.save(update_fields=["sent_at"])
            sent += 1
    return sent


def sweep_delay() -> dt.timedelta:
    return dt.timedelta(seconds=settings.OUTBOX_SWEEP_AFTER_SECONDS)
