"""Batches: counted once per job however often it finishes, the callback
written exactly once with the last completion (even when the last ones
finish at the same moment), and run once however often it is delivered."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connections

from apps.jobs import outbox
from apps.jobs.batches import BatchJob, batch_create, callback_once, job_finished
from apps.jobs.models import Effect, JobBatch, JobBatchCompletion, OutboxMessage
from apps.jobs.tasks import ping


@pytest.fixture
def unsent(monkeypatch):
    """Outbox rows stay in the table (nothing is published to a broker)."""
    monkeypatch.setattr(outbox.relay_thread, "submit", lambda job: True)
    monkeypatch.setattr(outbox, "_run_job", lambda job: True)


def callbacks_of(batch: JobBatch) -> list[OutboxMessage]:
    return [m for m in OutboxMessage.objects.filter(task_name="jobs.ping")
            if m.headers.get("batch_callback") == str(batch.pk)]


def make(size: int, **options) -> JobBatch:
    return batch_create(name="test batch", jobs=[BatchJob(ping, args=(0,), kwargs={"key": f"b:{n}"})
                                                 for n in range(size)], **options)


def test_concurrent_completions_count_once_and_write_one_callback(unsent, django_db_blocker):
    """Committed, in threads of their own: the row lock is what orders them."""
    with django_db_blocker.unblock():
        batch = make(20, callback=ping, callback_kwargs={"sent_at": 0, "key": "cb"})
        members = [m for m in OutboxMessage.objects.filter(task_name="jobs.ping")
                   if m.headers.get("batch_id") == str(batch.pk)]
        counted: list[bool] = []

        def finish(task_id: str) -> None:
            try:
                counted.append(job_finished(batch_id=str(batch.pk), task_id=task_id, outcome="succeeded"))
            finally:
                connections.close_all()

        try:
            assert len(members) == 20
            ids = [str(m.pk) for m in members]
            threads = [threading.Thread(target=finish, args=(i,)) for i in ids + ids[:10]]  # 10 redeliveries
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            batch.refresh_from_db()
            assert counted.count(True) == 20 and counted.count(False) == 10
            assert (batch.succeeded, batch.failed, batch.finished_at is not None) == (20, 0, True)
            (callback,) = callbacks_of(batch)
            assert batch.callback_message_id == callback.pk and callback.kwargs == {"sent_at": 0, "key": "cb"}
        finally:
            OutboxMessage.objects.filter(pk__in=[m.pk for m in members + callbacks_of(batch)]).delete()
            JobBatchCompletion.objects.filter(batch=batch).delete()
            batch.delete()


@pytest.mark.django_db
def test_a_success_callback_is_not_sent_when_a_job_failed(unsent):
    batch = make(2, callback=ping, callback_on="success")
    assert job_finished(batch_id=str(batch.pk), task_id="one", outcome="failed")
    assert job_finished(batch_id=str(batch.pk), task_id="two", outcome="skipped")
    batch.refresh_from_db()
    assert (batch.succeeded, batch.failed) == (1, 1) and batch.finished_at is not None
    assert callbacks_of(batch) == [] and batch.callback_message_id is None


@pytest.mark.django_db
def test_an_empty_batch_calls_back_at_once(unsent):
    batch = make(0, callback=ping, callback_kwargs={"sent_at": 0})
    assert batch.finished_at is not None and len(callbacks_of(batch)) == 1


@pytest.mark.django_db
def test_an_unknown_callback_is_refused_when_the_batch_is_made(unsent):
    with pytest.raises(ValueError, match="no task"):
        make(1, callback="no.such.task")
    assert not JobBatch.objects.exists()


@pytest.mark.django_db
def test_the_callback_runs_once_however_often_it_is_delivered(unsent):
    batch = make(0)
    runs = []
    for _ in range(3):
        with callback_once(str(batch.pk), "jobs.ping") as needed:
            if needed:
                runs.append(1)
    assert runs == [1]
    assert Effect.objects.get(key=f"batch-callback:{batch.pk}").done
    batch.refresh_from_db()
    assert batch.callback_done_at is not None


@pytest.mark.django_db
def test_a_batch_job_carries_its_tenant_and_batch_headers(unsent, alpha):
    from apps.search.tasks import rebuild_index

    batch = batch_create(name="reindex", jobs=[BatchJob(rebuild_index, kwargs={"restart": True}, tenant=alpha)])
    (row,) = [m for m in OutboxMessage.objects.filter(task_name="search.rebuild_index")
              if m.headers.get("batch_id") == str(batch.pk)]
    assert (row.headers["tenant_id"], row.headers["tenant_slug"], row.kwargs) == (alpha.pk, "alpha",
                                                                                  {"restart": True})
    assert uuid.UUID(row.headers["batch_id"]) == batch.pk
