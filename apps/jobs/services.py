"""Dead letters, once-only effects and the control-plane outbox."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import outbox
from .models import DeadLetter, Effect, OutboxMessage


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
    from config.celery_app import app

    if dead_letter.status != DeadLetter.Status.DEAD:
        raise ValueError(f"dead letter {dead_letter.pk} is {dead_letter.status}, not dead")
    options = {"queue": dead_letter.queue} if dead_letter.queue else {}
    result = app.send_task(dead_letter.task_name, args=dead_letter.args, kwargs=dead_letter.kwargs,
                           headers=dead_letter.headers, **options)
    DeadLetter.objects.filter(pk=dead_letter.pk).update(
        status=DeadLetter.Status.REPLAYED, replayed_at=timezone.now(), replay_task_id=result.id
    )
    return result.id


def dead_letter_discard(*, dead_letter: DeadLetter) -> None:
    DeadLetter.objects.filter(pk=dead_letter.pk).update(status=DeadLetter.Status.DISCARDED)


@contextmanager
def effect_once(key: str, *, task_name: str = "") -> Iterator[bool]:
    """``with effect_once(key) as needed: if needed: <do it>``.

    Yields False when the effect with this key already happened. The effect
    is marked done only if the block finishes, so a crash before that lets a
    redelivered task do it (the window is the time between the outside
    system accepting and this mark; keys also travel with the effect, e.g. as
    an email's Message-ID, so the receiver can drop a rare duplicate).
    """
    effect, _ = Effect.objects.get_or_create(key=key, defaults={"task_name": task_name})
    if effect.done:
        yield False
        return
    Effect.objects.filter(pk=effect.pk).update(attempts=F("attempts") + 1)
    yield True
    Effect.objects.filter(pk=effect.pk).update(done=True, done_at=timezone.now())


def control_outbox_enqueue(task, *, args=(), kwargs=None, headers=None) -> OutboxMessage:
    """Queue ``task`` in the control-plane outbox (inside the caller's transaction)."""
    return outbox.enqueue(OutboxMessage, "default", task, args=args, kwargs=kwargs, headers=headers)


def control_outbox_sweep() -> int:
    return outbox.relay(OutboxMessage, "default", older_than=outbox.sweep_delay())


@transaction.atomic
def dead_letters_purge(*, queryset) -> int:
    deleted, _ = queryset.delete()
    return deleted
