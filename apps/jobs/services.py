"""Dead letters, once-only effects and the control-plane outbox."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from . import outbox
from .errors import RetryLater
from .models import DeadLetter, Effect, OutboxMessage

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
    """Send the task again, with its original tenant and arguments."""
    from celery import current_app as app  # the project app (config loads it with Django)

    if dead_letter.status != DeadLetter.Status.DEAD:
        raise ValueError(f"dead letter {dead_letter.pk} is {dead_letter.status}, not dead")
    from .redaction import redacted_repr

    options = {"queue": dead_letter.queue} if dead_letter.queue else {}
    argsrepr, kwargsrepr = redacted_repr(dead_letter.args, dead_letter.kwargs)
    result = app.send_task(dead_letter.task_name, args=dead_letter.args, kwargs=dead_letter.kwargs,
                           headers=dead_letter.headers, argsrepr=argsrepr, kwargsrepr=kwargsrepr, **options)
    DeadLetter.objects.filter(pk=dead_letter.pk).update(
        status=DeadLetter.Status.REPLAYED, replayed_at=timezone.now(), replay_task_id=result.id
    )
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
