"""Dead letters, once-only effects and the control-plane outbox."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from . import outbox
from .errors import RetryLater
from .models import DeadLetter, Effect, Job, OutboxMessage, UniqueClaim

logger = logging.getLogger(__name__)


def dead_letter_record(*, task_name, task_id, args, kwargs, headers, queue, exception, traceback, attempts,
                       first_failed_at=None) -> DeadLetter:
    now = timezone.now()
    return DeadLetter.objects.create(
        task_name=task_name, task_id=task_id, queue=queue, tenant_id=headers.get("tenant_id"),
        tenant_slug=headers.get("tenant_slug") or "", args=args, kwargs=kwargs, headers=headers,
        exception=exception[:5000], traceback=traceback[-20000:], attempts=attempts,
        first_failed_at=first_failed_at or now, last_failed_at=now,
    )


def dead_letter_replay(*, dead_letter: DeadLetter) -> str:
    """Send the task again, with its original tenant and arguments, under its
    own task id as the next run of its job record (apps/jobs/records.py), so
    the record follows the replay instead of staying dead."""
    from celery import current_app as app  # the project app (config loads it with Django)

    from .records import RUN
    from .redaction import redacted_repr

    if dead_letter.status != DeadLetter.Status.DEAD:
        raise ValueError(f"dead letter {dead_letter.pk} is {dead_letter.status}, not dead")
    task_id = dead_letter.task_id or None
    seq = Job.objects.filter(pk=task_id).values_list("seq", flat=True).first() if task_id else None
    run = (seq or 0) // RUN + 1
    options = {"queue": dead_letter.queue} if dead_letter.queue else {}
    argsrepr, kwargsrepr = redacted_repr(dead_letter.args, dead_letter.kwargs)
    result = app.send_task(dead_letter.task_name, args=dead_letter.args, kwargs=dead_letter.kwargs,
                           headers={**dead_letter.headers, "job_run": run}, task_id=task_id, argsrepr=argsrepr,
                           kwargsrepr=kwargsrepr, **options)
    DeadLetter.objects.filter(pk=dead_letter.pk).update(
        status=DeadLetter.Status.REPLAYED, replayed_at=timezone.now(), replay_task_id=result.id
    )
    # Unless the worker's own events for this run got there first.
    Job.objects.filter(pk=result.id, seq__lt=run * RUN).update(
        state=Job.State.QUEUED, seq=run * RUN, eta=None, finished_at=None, updated_at=timezone.now())
    return result.id


def dead_letter_discard(*, dead_letter: DeadLetter) -> None:
    DeadLetter.objects.filter(pk=dead_letter.pk).update(status=DeadLetter.Status.DISCARDED)


class EffectInProgress(RetryLater):
    """Another runner holds the effect's claim: retry once it is done or lapsed."""


@contextmanager
def effect_once(key: str, *, task_name: str = "") -> Iterator[bool]:
    """``with effect_once(key) as needed: if needed: <do it>``.

    Yields False when the effect with this key already happened. One runner
    at a time: the first claims the effect with a conditional UPDATE (a lease
    of EFFECT_CLAIM_SECONDS, renewed while the block runs); a concurrent
    redelivery raises EffectInProgress and retries later. A runner that died
    leaves a claim that lapses. The effect is marked done only if the block
    finishes, so a crash before that lets a redelivered task do it (the window
    is the time between the outside system accepting and this mark; keys
    also travel with the effect, e.g. as an email's Message-ID, so the
    receiver can drop a rare duplicate).
    """
    effect, _ = Effect.objects.get_or_create(key=key, defaults={"task_name": task_name})
    token = uuid.uuid4()
    lease = dt.timedelta(seconds=settings.EFFECT_CLAIM_SECONDS)
    claimed = Effect.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=Now()), pk=effect.pk, done=False
    ).update(claimed_until=Now() + lease, claim_token=token, attempts=F("attempts") + 1)
    if not claimed:
        if Effect.objects.filter(pk=effect.pk, done=True).exists():
            yield False
            return
        raise EffectInProgress(f"effect {key!r} is being done by another runner")
    mine = Effect.objects.filter(pk=effect.pk, claim_token=token)
    with _lease_renewed(mine, lease):
        try:
            yield True
        except BaseException:
            mine.update(claimed_until=None, claim_token=None)  # a retry may go at once
            raise
    mine.update(done=True, done_at=timezone.now(), claimed_until=None, claim_token=None)


@contextmanager
def _lease_renewed(claim, lease: dt.timedelta) -> Iterator[None]:
    """Extend ``claim`` every third of ``lease`` from a thread of its own
    (with its own connection) while the block runs."""
    if transaction.get_connection().in_atomic_block:
        # The claim is inside the caller's open transaction, which another
        # connection can neither see nor update: the lease stands alone.
        yield
        return
    stop = threading.Event()

    def renew() -> None:
        try:
            while not stop.wait(lease.total_seconds() / 3):
                claim.update(claimed_until=Now() + lease)
        except Exception:  # the lease then lapses, as for a runner that died
            logger.warning("effect lease renewal failed", exc_info=True)
        finally:
            connections.close_all()  # this thread's connections only

    threading.Thread(target=renew, name="effect-lease", daemon=True).start()
    try:
        yield
    finally:
        stop.set()


def control_outbox_enqueue(task, *, args=(), kwargs=None, headers=None) -> OutboxMessage:
    """Queue ``task`` in the control-plane outbox (inside the caller's transaction)."""
    return outbox.enqueue(OutboxMessage, "default", task, args=args, kwargs=kwargs, headers=headers)


def control_outbox_sweep() -> int:
    return outbox.relay(OutboxMessage, "default", older_than=outbox.sweep_delay())


def control_outbox_purge() -> int:
    """Delete control outbox rows sent more than OUTBOX_RETENTION_SECONDS ago."""
    return outbox.purge_sent(OutboxMessage, "default", older_than=outbox.retention(),
                             batch=settings.OUTBOX_PURGE_BATCH)


@transaction.atomic
def dead_letters_purge(*, queryset) -> int:
    deleted, _ = queryset.delete()
    return deleted


# --- job records -----------------------------------------------------------------

RETRYABLE = (Job.State.FAILED, Job.State.DEAD)


class JobNotRetryable(ValueError):
    """The job cannot be retried or discarded (not failed, or no dead letter
    keeps its arguments); the message says which."""


def job_dead_letter(job: Job) -> DeadLetter | None:
    """The waiting dead letter that holds ``job``'s original arguments."""
    waiting = DeadLetter.objects.filter(status=DeadLetter.Status.DEAD)
    if job.dead_letter_id:
        found = waiting.filter(pk=job.dead_letter_id).first()
        if found is not None:
            return found
    return waiting.filter(task_id=job.task_id).order_by("-id").first()


def _retryable(job: Job) -> DeadLetter:
    if job.state not in RETRYABLE:
        raise JobNotRetryable(f"Job {job.task_id} is {job.state}, not failed or dead.")
    dead = job_dead_letter(job)
    if dead is None:
        raise JobNotRetryable(f"No waiting dead letter keeps the arguments of job {job.task_id}.")
    return dead


def job_retry(*, job: Job) -> str:
    """Run a failed or dead job again now: its dead letter (which keeps the
    arguments; the record has them redacted) is replayed under the job's
    own task id, as the record's next run."""
    return dead_letter_replay(dead_letter=_retryable(job))


def job_discard(*, job: Job) -> None:
    """Give a failed or dead job up: its dead letter is discarded too."""
    from .records import STEPS

    if job.state not in RETRYABLE:
        raise JobNotRetryable(f"Job {job.task_id} is {job.state}, not failed or dead.")
    dead = job_dead_letter(job)
    if dead is not None:
        dead_letter_discard(dead_letter=dead)
    Job.objects.filter(pk=job.pk, seq=job.seq).update(
        state=Job.State.DISCARDED, seq=job.seq - job.seq % 10 + STEPS["discarded"], updated_at=timezone.now())


PURGE_JOBS_SQL = "DELETE FROM jobs_job WHERE task_id IN (SELECT task_id FROM jobs_job WHERE {where} LIMIT %s)"
PURGE_BATCHES_SQL = """
WITH old AS (SELECT id FROM jobs_jobbatch WHERE finished_at < %s LIMIT %s),
     gone AS (DELETE FROM jobs_jobbatchcompletion WHERE batch_id IN (SELECT id FROM old))
DELETE FROM jobs_jobbatch WHERE id IN (SELECT id FROM old)
"""


def _purge_in_batches(sql: str, params: list, batch: int) -> int:
    """Run a bounded DELETE until it deletes less than ``batch`` rows (short
    locks, bounded WAL per statement)."""
    alias = router.db_for_write(Job)
    deleted = 0
    while True:
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, [*params, batch])
            count = cursor.rowcount
        deleted += count
        if count < batch:
            return deleted


def job_records_purge() -> dict[str, int]:
    """Delete records past their retention: succeeded and skipped ones after
    JOB_RECORD_SUCCEEDED_RETENTION_SECONDS, every other one (and finished
    batches, and lapsed unique claims) after JOB_RECORD_RETENTION_SECONDS."""
    now = timezone.now()
    short = now - dt.timedelta(seconds=settings.JOB_RECORD_SUCCEEDED_RETENTION_SECONDS)
    long = now - dt.timedelta(seconds=settings.JOB_RECORD_RETENTION_SECONDS)
    batch = settings.JOB_RECORD_PURGE_BATCH
    done = [Job.State.SUCCEEDED, Job.State.SKIPPED]
    return {
        "jobs": _purge_in_batches(PURGE_JOBS_SQL.format(where="state = ANY(%s) AND updated_at < %s"),
                                  [done, short], batch)
        + _purge_in_batches(PURGE_JOBS_SQL.format(where="updated_at < %s"), [long], batch),
        "batches": _purge_in_batches(PURGE_BATCHES_SQL, [long], batch),
        "unique_claims": UniqueClaim.objects.filter(expires_at__lt=now).delete()[0],
    }
