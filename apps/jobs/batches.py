"""Batches: jobs sent together, with progress, and a callback sent exactly
once when the last of them has finished.

* ``batch_create`` writes the batch row (its total) and one control outbox
  row per job, each carrying the ``batch_id`` header, in one transaction:
  the batch exists with all its jobs or not at all, and a broker that is
  down loses nothing (the sweep sends them).
* A job finishes when its body succeeded, it was skipped as a duplicate
  (apps/jobs/uniqueness.py: the run it duplicates did the work) or it went
  to the dead letters. Its worker then, in one transaction on the control
  database: inserts a completion row (unique per batch and task id, so a
  redelivered or replayed job is counted once), adds one to the batch's
  ``succeeded`` or ``failed`` (the row lock orders concurrent completions,
  so exactly one transaction sees the last one), and in that same
  transaction writes the callback's outbox row. A worker SIGKILLed before
  that commit leaves the job unacknowledged: it runs again (bodies are
  idempotent) and completes then; one killed after it is counted already.
* The callback runs once: its message may be published twice (an outbox
  relay dying between publish and mark) or redelivered (a worker dying mid
  run), so its run is an effect (``effect_once`` with the key
  ``batch-callback:<batch id>``). Its task reads the batch id from its
  ``batch_callback`` header.

``callback_on="success"`` sends the callback only when no job failed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connections, router, transaction
from django.utils import timezone

from .models import JobBatch, OutboxMessage

logger = logging.getLogger(__name__)

COMPLETE_SQL = """
INSERT INTO jobs_jobbatchcompletion (batch_id, task_id, outcome, at) VALUES (%s, %s, %s, now())
ON CONFLICT (batch_id, task_id) DO NOTHING RETURNING id
"""
COUNT_SQL = """
UPDATE jobs_jobbatch SET succeeded = succeeded + %s, failed = failed + %s
WHERE id = %s AND finished_at IS NULL
RETURNING total, succeeded, failed
"""


@dataclass(frozen=True)
class BatchJob:
    """One job of a batch: a task, its arguments, and its tenant if it is a tenant task."""

    task: object
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    tenant: object = None


def _alias() -> str:
    return router.db_for_write(JobBatch)


def batch_create(*, name: str, jobs: list[BatchJob], callback=None, callback_args=(), callback_kwargs=None,
                 callback_on: str = JobBatch.CallbackOn.COMPLETE, created_by: str = "") -> JobBatch:
    """Record a batch and queue its jobs (and, for an empty one, its
    callback) in the control outbox, in the caller's transaction if any."""
    from celery import current_app as app  # the project app (config loads it with Django)

    from . import outbox

    if callback_on not in JobBatch.CallbackOn.values:
        raise ValueError(f"callback_on must be one of {JobBatch.CallbackOn.values}")
    if callback is not None and getattr(callback, "name", callback) not in app.tasks:
        raise ValueError(f"no task {callback!r} to call back")  # found out now, not when the last job ends
    with transaction.atomic(using=_alias()):
        batch = JobBatch.objects.using(_alias()).create(
            name=name[:200], total=len(jobs), callback=getattr(callback, "name", callback or ""),
            callback_args=list(callback_args), callback_kwargs=dict(callback_kwargs or {}), callback_on=callback_on,
            created_by=created_by[:254])
        outbox.enqueue_many(OutboxMessage, _alias(), [
            (job.task, job.args, job.kwargs, {"batch_id": str(batch.pk), **_tenant_headers(job.tenant)})
            for job in jobs])
        if not jobs:
            _finish(batch.pk, failed=0)
            batch.refresh_from_db()
    return batch


def _tenant_headers(tenant) -> dict:
    return {} if tenant is None else {"tenant_id": tenant.pk, "tenant_slug": tenant.slug}


def job_finished(*, batch_id: str, task_id: str, outcome: str) -> bool:
    """Count a batch job's end once (``outcome``: succeeded, failed or
    skipped); sends the callback with the last one. True when it counted."""
    failed = int(outcome == "failed")
    with transaction.atomic(using=_alias()), connections[_alias()].cursor() as cursor:
        cursor.execute(COMPLETE_SQL, [batch_id, task_id, outcome])
        if cursor.fetchone() is None:
            return False  # counted before: a redelivery, or a retry of a job that failed
        cursor.execute(COUNT_SQL, [1 - failed, failed, batch_id])
        row = cursor.fetchone()
        if row is not None and row[1] + row[2] >= row[0]:
            _finish(batch_id, failed=row[2])
    return True


def _finish(batch_id, *, failed: int) -> None:
    """Inside the last completion's transaction: mark the batch finished and
    write its callback's outbox row."""
    from celery import current_app as app  # the project app (config loads it with Django)

    from .services import control_outbox_enqueue

    batch = JobBatch.objects.using(_alias()).select_for_update().get(pk=batch_id)
    message_id = None
    if batch.callback and (batch.callback_on == JobBatch.CallbackOn.COMPLETE or not failed):
        message = control_outbox_enqueue(app.tasks[batch.callback], args=batch.callback_args,
                                         kwargs=batch.callback_kwargs, headers={"batch_callback": str(batch.pk)})
        message_id = message.pk
    JobBatch.objects.using(_alias()).filter(pk=batch_id).update(finished_at=timezone.now(),
                                                                callback_message_id=message_id)
    logger.info("batch finished", extra={"batch": str(batch_id), "total": batch.total, "failed": failed,
                                         "callback": batch.callback if message_id else ""})


@contextmanager
def callback_once(batch_id: str, task_name: str) -> Iterator[bool]:
    """``with callback_once(batch_id, name) as needed: if needed: <run it>``;
    raises EffectInProgress while another delivery runs it."""
    from .services import effect_once

    with effect_once(f"batch-callback:{batch_id}", task_name=task_name) as needed:
        yield needed
    if needed:
        JobBatch.objects.using(_alias()).filter(pk=batch_id).update(callback_done_at=timezone.now())


def batch_progress(batch: JobBatch) -> dict:
    """What a progress bar shows (JSON-ready)."""
    return {"id": str(batch.pk), "name": batch.name, "total": batch.total, "succeeded": batch.succeeded,
            "failed": batch.failed, "done": batch.done, "percent": batch.percent,
            "finished": batch.finished_at is not None,
            "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
            "callback": batch.callback, "callback_done": batch.callback_done_at is not None}
