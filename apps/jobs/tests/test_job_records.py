"""Job records: events gathered in process and written in batches, in any
order, redacted; retry and discard through the dead letters; retention."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
from django.utils import timezone

from apps.jobs import records
from apps.jobs.models import DeadLetter, Job
from apps.jobs.records import seq_of
from apps.jobs.redaction import REDACTED
from apps.jobs.services import JobNotRetryable, job_discard, job_records_purge, job_retry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_buffer(monkeypatch):
    """Events go to a buffer this test flushes itself: the background thread
    of this process never takes them into another connection."""
    buffer = records._Buffer()
    buffer.flusher.ensure_started = lambda: None
    monkeypatch.setattr(records, "_buffer", buffer)
    return buffer


def published(task_id: str, *, task="search.index_documents", tenant=None, retries=0, eta=None, run=0,
              args=((1, 2),), kwargs=None, at=None, queue="search") -> None:
    headers = {"id": task_id, "task": task, "retries": retries, "eta": eta, "job_run": run}
    if tenant is not None:
        headers.update(tenant_id=tenant.pk, tenant_slug=tenant.slug)
    records._buffer.add(("published", at or time.time(), headers, (list(args), kwargs or {}, {}), queue))


def worker(task_id: str, state: str, *, attempt=1, run=0, task="search.index_documents", **fields) -> None:
    event = {"task_id": task_id, "task_name": task, "queue": "search", "tenant_id": None, "tenant_slug": "",
             "batch_id": None, "run": run, "attempt": attempt, "state": state, "at": time.time(),
             "worker": "w1@host", **fields}
    records._buffer.add(("worker", event))


def job(task_id: str) -> Job:
    return Job.objects.get(pk=task_id)


def test_a_publish_becomes_a_queued_row_with_tenant_queue_and_redacted_arguments(alpha):
    task_id = str(uuid.uuid4())
    published(task_id, task="notifications.send_email", tenant=alpha, args=(),
              kwargs={"to": ["a@b.test"], "reset_url": "https://x.test/r?token=abc", "effect_key": "k1"},
              queue="emails")
    assert records.flush() == 1
    row = job(task_id)
    assert (row.state, row.queue, row.tenant_id, row.tenant_slug, row.attempts) == ("queued", "emails", alpha.pk,
                                                                                    "alpha", 0)
    shown = json.loads(row.arguments)
    assert shown["kwargs"]["reset_url"] == REDACTED and shown["kwargs"]["effect_key"] == "k1"
    assert "abc" not in row.arguments
    assert row.history[0]["s"] == "queued"


def test_a_message_with_a_future_eta_is_scheduled():
    task_id = str(uuid.uuid4())
    later = timezone.now() + dt.timedelta(minutes=5)
    published(task_id, eta=later.isoformat())
    records.flush()
    row = job(task_id)
    assert row.state == "scheduled" and abs((row.eta - later).total_seconds()) < 0.01


def test_events_written_in_any_order_keep_the_latest_state():
    """The worker's flusher may write "running" and "succeeded" before the
    web's flusher writes "queued": the row ends succeeded either way."""
    early, late = str(uuid.uuid4()), str(uuid.uuid4())
    worker(early, "running", starts=1, args=[[1]], kwargs={})
    worker(early, "succeeded", runtime=0.25)
    records.flush()
    published(early)
    records.flush()
    row = job(early)
    assert (row.state, row.attempts, row.runtime, row.worker) == ("succeeded", 1, 0.25, "w1@host")
    assert row.started_at is not None and row.finished_at is not None
    # All in one flush, in the order they happened.
    published(late)
    worker(late, "running", starts=1, args=[[1]], kwargs={})
    worker(late, "succeeded", runtime=0.1)
    assert records.flush() == 1
    assert job(late).state == "succeeded" and [e["s"] for e in job(late).history] == ["queued", "running", "succeeded"]


def test_a_retry_shows_retrying_with_its_next_run_and_error_then_the_next_attempt():
    task_id = str(uuid.uuid4())
    published(task_id)
    worker(task_id, "running", starts=1, args=[[1]], kwargs={})
    worker(task_id, "retrying", error="RetryLater: email provider circuit is open")
    records.flush()
    eta = timezone.now() + dt.timedelta(seconds=30)
    published(task_id, retries=1, eta=eta.isoformat())
    records.flush()
    row = job(task_id)
    assert row.state == "retrying" and row.error.startswith("RetryLater") and row.eta is not None
    worker(task_id, "running", attempt=2, starts=1, args=[[1]], kwargs={})
    worker(task_id, "succeeded", attempt=2, runtime=0.5)
    records.flush()
    row = job(task_id)
    assert (row.state, row.attempts) == ("succeeded", 2)
    assert row.error.startswith("RetryLater")  # the last failure stays readable
    # A stale "retrying" of attempt 1 written late changes nothing.
    worker(task_id, "retrying", error="late")
    records.flush()
    assert job(task_id).state == "succeeded"


def test_parked_by_fairness_shows_queued_and_runs_on():
    task_id = str(uuid.uuid4())
    published(task_id)
    worker(task_id, "running", starts=1, args=[[1]], kwargs={})
    worker(task_id, "parked")
    records.flush()
    assert job(task_id).state == "queued"
    published(task_id)  # re-published when a slot frees
    worker(task_id, "running", starts=1, args=[[1]], kwargs={})
    records.flush()
    assert job(task_id).state == "running" and job(task_id).attempts == 2


def test_a_full_buffer_drops_new_events_and_never_blocks(settings):
    settings.JOB_RECORD_BUFFER_SIZE = 100
    ids = [str(uuid.uuid4()) for _ in range(150)]
    for task_id in ids:
        published(task_id)
    assert records._buffer.dropped == 50
    assert records.flush() == 100
    assert Job.objects.filter(pk__in=ids).count() == 100


def test_publishing_costs_the_caller_no_query(alpha, django_assert_num_queries):
    from apps.search.tasks import index_documents
    from apps.tenancy.activation import tenant_activated
    from config.celery_app import app
    from tests.workers import purge_queues

    with tenant_activated(alpha), django_assert_num_queries(0):
        result = index_documents.apply_async(args=[[1, 2]])
    purge_queues(app)
    records.flush()
    row = job(result.id)
    assert (row.state, row.tenant_id, row.queue, row.task_name) == ("queued", alpha.pk, "search",
                                                                   "search.index_documents")


def dead_job(tenant, task_id: str) -> tuple[Job, DeadLetter]:
    now = timezone.now()
    letter = DeadLetter.objects.create(
        task_name="search.index_documents", task_id=task_id, queue="search", tenant_id=tenant.pk,
        tenant_slug=tenant.slug, args=[[7]], kwargs={}, headers={"tenant_id": tenant.pk, "tenant_slug": tenant.slug},
        exception="ValueError: bad", attempts=1, first_failed_at=now, last_failed_at=now)
    published(task_id, tenant=tenant, args=([7],))
    worker(task_id, "running", starts=1, args=[[7]], kwargs={})
    worker(task_id, "dead", error="ValueError: bad", dead_letter_id=letter.pk)
    records.flush()
    return job(task_id), letter


def test_retry_replays_the_dead_letter_under_the_same_task_id_as_the_next_run(alpha, monkeypatch):
    from celery import current_app

    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kw: sent.append((name, kw)) or
                        type("R", (), {"id": kw["task_id"]})())
    task_id = str(uuid.uuid4())
    row, letter = dead_job(alpha, task_id)
    assert row.state == "dead" and row.dead_letter_id == letter.pk
    job_retry(job=row)
    (name, kwargs), = sent
    assert name == "search.index_documents" and kwargs["task_id"] == task_id and kwargs["args"] == [[7]]
    assert kwargs["headers"]["job_run"] == 1 and kwargs["headers"]["tenant_id"] == alpha.pk
    assert DeadLetter.objects.get(pk=letter.pk).status == "replayed"
    assert job(task_id).state == "queued"
    # The new run's events win over everything of the first run.
    worker(task_id, "running", run=1, starts=1, args=[[7]], kwargs={})
    worker(task_id, "succeeded", run=1, runtime=0.1)
    records.flush()
    assert (job(task_id).state, job(task_id).attempts) == ("succeeded", 2)
    with pytest.raises(JobNotRetryable):
        job_retry(job=job(task_id))


def test_discard_gives_up_the_job_and_its_dead_letter(alpha):
    row, letter = dead_job(alpha, str(uuid.uuid4()))
    job_discard(job=row)
    assert job(row.pk).state == "discarded" and DeadLetter.objects.get(pk=letter.pk).status == "discarded"
    with pytest.raises(JobNotRetryable):
        job_retry(job=job(row.pk))


def test_a_failed_job_without_a_dead_letter_cannot_be_retried():
    task_id = str(uuid.uuid4())
    worker(task_id, "running", starts=1, args=[], kwargs={})
    worker(task_id, "failed", error="Boom")
    records.flush()
    with pytest.raises(JobNotRetryable, match="No waiting dead letter"):
        job_retry(job=job(task_id))


def test_purge_keeps_failures_longer_than_successes(settings):
    settings.JOB_RECORD_SUCCEEDED_RETENTION_SECONDS = 3600
    settings.JOB_RECORD_RETENTION_SECONDS = 7 * 24 * 3600
    settings.JOB_RECORD_PURGE_BATCH = 2
    now = timezone.now()

    def make(state: str, hours: float) -> str:
        task_id = str(uuid.uuid4())
        at = now - dt.timedelta(hours=hours)
        Job.objects.create(task_id=task_id, task_name="t", state=state, created_at=at, updated_at=at,
                           seq=seq_of(0, 1, state))
        return task_id

    gone = [make("succeeded", 2) for _ in range(3)] + [make("skipped", 2), make("dead", 24 * 8)]
    kept = [make("succeeded", 0.5), make("dead", 2), make("failed", 24), make("running", 2)]
    assert job_records_purge()["jobs"] == 5
    assert set(Job.objects.filter(pk__in=gone + kept).values_list("pk", flat=True)) == set(kept)


def test_a_replay_from_the_dead_letters_page_is_the_jobs_next_run_too(alpha, monkeypatch):
    from celery import current_app

    from apps.jobs.services import dead_letter_replay

    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kw: sent.append(kw) or
                        type("R", (), {"id": kw["task_id"]})())
    row, letter = dead_job(alpha, str(uuid.uuid4()))
    assert dead_letter_replay(dead_letter=letter) == row.pk
    assert sent[0]["task_id"] == row.pk and sent[0]["headers"]["job_run"] == 1
    assert job(row.pk).state == "queued"  # no longer listed among the tenant's failed jobs
