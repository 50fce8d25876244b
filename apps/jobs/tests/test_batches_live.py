"""A batch whose worker is SIGKILLed in the middle: every job is counted once,
and the callback runs exactly once after the last, on another worker."""

from __future__ import annotations

import uuid

import pytest

from apps.jobs.models import Effect, Job, JobBatch, JobBatchCompletion, OutboxMessage
from tests.workers import CeleryWorker, live_broker, wait_until

pytestmark = pytest.mark.live

JOBS = 12


def test_the_callback_runs_once_after_every_job_although_a_worker_was_killed(tenants, django_db_blocker):
    from apps.caching.connections import redis_client
    from apps.jobs.batches import BatchJob, batch_create
    from apps.jobs.tasks import ping, unique_probe

    run = f"jobs-live:batch:{uuid.uuid4()}"
    fast = {"JOB_RECORD_FLUSH_SECONDS": "0.2", "WORKER_PRESENCE_SECONDS": "0.5"}
    client = redis_client()
    with live_broker("redis") as broker, django_db_blocker.unblock():
        first = CeleryWorker(broker_url=broker["url"], queues="default", concurrency=2, name="batch-1",
                             env=fast).start()
        second = None
        batch = batch_create(name="killed midway", callback=ping, callback_kwargs={"sent_at": 0, "key": f"{run}:cb"},
                             jobs=[BatchJob(unique_probe, kwargs={"key": f"{run}:{n}", "seconds": 0.5})
                                   for n in range(JOBS)])
        try:
            wait_until(lambda: JobBatch.objects.get(pk=batch.pk).done >= 3, 30, message="a few done", interval=0.1)
            first.kill()  # two jobs in flight, unacknowledged
            killed_at = JobBatch.objects.get(pk=batch.pk).done
            second = CeleryWorker(broker_url=broker["url"], queues="default", concurrency=2, name="batch-2",
                                  env=fast).start()
            # The killed worker's messages come back after the visibility timeout (4 s here).
            finished = wait_until(lambda: (b := JobBatch.objects.get(pk=batch.pk)).callback_done_at and b, 60,
                                  message="callback ran", interval=0.2)
            assert killed_at < JOBS
            assert (finished.succeeded, finished.failed, finished.finished_at is not None) == (JOBS, 0, True)
            assert JobBatchCompletion.objects.filter(batch=batch).count() == JOBS
            assert all(client.llen(f"{run}:{n}") >= 1 for n in range(JOBS))  # each ran (some twice)
            assert client.llen(f"{run}:cb") == 1
            callbacks = [m for m in OutboxMessage.objects.filter(task_name="jobs.ping")
                         if m.headers.get("batch_callback") == str(batch.pk)]
            assert [m.pk for m in callbacks] == [finished.callback_message_id]
        finally:
            first.stop()
            if second is not None:
                second.stop()
            members = [m.pk for m in OutboxMessage.objects.filter(task_name__in=["jobs.unique_probe", "jobs.ping"])
                       if str(batch.pk) in (m.headers.get("batch_id"), m.headers.get("batch_callback"))]
            Job.objects.filter(pk__in=[str(pk) for pk in members]).delete()
            OutboxMessage.objects.filter(pk__in=members).delete()
            JobBatchCompletion.objects.filter(batch=batch).delete()
            JobBatch.objects.filter(pk=batch.pk).delete()
            Effect.objects.filter(key=f"batch-callback:{batch.pk}").delete()
            client.delete(*[f"{run}:{n}" for n in range(JOBS)], f"{run}:cb")
