"""The control outbox: claims, publishing off the request thread and outside
any transaction, purge after the retention."""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest
from django.db import connections, transaction
from django.utils import timezone

from apps.jobs import outbox
from apps.jobs.models import OutboxMessage
from apps.jobs.services import control_outbox_enqueue, control_outbox_purge
from apps.jobs.tasks import ping
from tests import support


@pytest.fixture
def committed(django_db_setup, django_db_blocker):
    """Committed control-outbox rows (other connections must see them); removed after."""
    with django_db_blocker.unblock():
        made: list = []
        yield made
        outbox.relay_thread.flush(10)
        OutboxMessage.objects.filter(pk__in=[row.pk for row in made]).delete()


def test_a_claimed_row_is_left_alone_until_its_claim_lapses(db):
    row = OutboxMessage.objects.create(task_name="jobs.ping", args=[0])
    assert [m.pk for m in outbox.claim(OutboxMessage, "default", [row.pk])] == [row.pk]
    assert outbox.claim(OutboxMessage, "default", [row.pk]) == []  # a second relay finds it taken
    OutboxMessage.objects.filter(pk=row.pk).update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
    assert [m.pk for m in outbox.claim(OutboxMessage, "default", [row.pk])] == [row.pk]  # its relay died


def test_the_sweep_takes_only_rows_older_than_the_delay(db):
    old = OutboxMessage.objects.create(task_name="jobs.ping", args=[0])
    OutboxMessage.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    new = OutboxMessage.objects.create(task_name="jobs.ping", args=[0])
    taken = {m.pk for m in outbox.claim(OutboxMessage, "default", older_than=dt.timedelta(minutes=1))}
    assert old.pk in taken and new.pk not in taken


def test_commit_does_not_wait_for_publishing_and_no_transaction_is_open_meanwhile(committed, monkeypatch):
    """A publish that cannot finish until the test lets it: the writer's
    commit returns all the same; while the relay thread publishes, its
    connection is idle (not 'idle in transaction') and another session can
    lock the row."""
    seen = {}
    real_publish = outbox.publish
    release, published = threading.Event(), threading.Event()

    def held_publish(message):
        pid = connections["default"].connection.info.backend_pid  # the relay thread's own session
        with psycopg.connect(support.test_database_url(), autocommit=True) as probe:
            seen["state"] = probe.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]
            with probe.transaction():
                probe.execute("SET LOCAL lock_timeout = '500ms'")
                seen["locked"] = probe.execute("SELECT 1 FROM jobs_outboxmessage WHERE id = %s FOR UPDATE NOWAIT",
                                               [message.id]).fetchone()
        seen["thread"] = threading.current_thread().name
        # False when nothing released it: the commit was waiting for this publish.
        seen["released"] = release.wait(15)
        real_publish(message)
        published.set()

    monkeypatch.setattr(outbox, "publish", held_publish)
    with transaction.atomic():
        message = control_outbox_enqueue(ping, args=[time.time()])
    committed.append(message)
    assert not published.is_set(), "the commit returned only after the publish"
    release.set()
    assert outbox.relay_thread.flush(15)
    message.refresh_from_db()
    assert seen == {"state": "idle", "locked": (1,), "thread": "outbox-relay", "released": True}
    assert message.sent_at is not None and message.claimed_until is None and message.attempts == 0


def test_a_broker_failure_pauses_the_relay_and_leaves_rows_to_the_sweep(committed, monkeypatch, settings):
    from tests.support import free_port
    from tests.workers import celery_broker

    settings.OUTBOX_RELAY_PAUSE_SECONDS = 30
    monkeypatch.setattr(outbox.relay_thread, "paused_until", 0.0)
    with celery_broker(f"redis://127.0.0.1:{free_port()}/0"):  # nothing listens there
        try:
            with transaction.atomic():
                first = control_outbox_enqueue(ping, args=[time.time()])
            committed.append(first)
            assert outbox.relay_thread.flush(10)
            with transaction.atomic():
                second = control_outbox_enqueue(ping, args=[time.time()])
            committed.append(second)
            assert outbox.relay_thread.flush(10)
        finally:
            outbox.relay_thread.paused_until = 0.0
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.sent_at is None and first.attempts == 1 and "refused" in first.last_error.lower()
    assert first.claimed_until is None  # free for the sweep at once
    assert second.sent_at is None and second.attempts == 0  # paused: not even tried


def test_sent_rows_are_purged_after_the_retention_in_bounded_batches(db, settings, django_assert_max_num_queries):
    settings.OUTBOX_RETENTION_SECONDS = 3600
    settings.OUTBOX_PURGE_BATCH = 2
    long_ago = timezone.now() - dt.timedelta(hours=2)
    old_sent = [OutboxMessage.objects.create(task_name="t", sent_at=long_ago) for _ in range(5)]
    recent = OutboxMessage.objects.create(task_name="t", sent_at=timezone.now() - dt.timedelta(minutes=5))
    unsent = OutboxMessage.objects.create(task_name="t")
    OutboxMessage.objects.filter(pk=unsent.pk).update(created_at=long_ago)  # old, but never sent: kept
    with django_assert_max_num_queries(3):  # one statement per batch of 2: 2 + 2 + 1
        assert control_outbox_purge() == 5
    remaining = set(OutboxMessage.objects.values_list("pk", flat=True))
    assert {recent.pk, unsent.pk} <= remaining and not remaining & {m.pk for m in old_sent}
