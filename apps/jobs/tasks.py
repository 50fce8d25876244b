from __future__ import annotations

import time

from celery import shared_task

from .base import PlatformTask, TenantTask

PING_KEY = "jobs:ping:latency"


@shared_task(base=PlatformTask, name="jobs.ping", ignore_result=True)
def ping(sent_at: float, key: str = PING_KEY) -> float:
    """Queue-lag probe: records seconds from enqueue to start (last 10,000)."""
    from apps.caching.connections import redis_client

    latency = time.time() - sent_at
    client = redis_client()
    client.rpush(key, latency)
    client.ltrim(key, -10_000, -1)
    return latency


@shared_task(base=TenantTask, name="jobs.tenant_probe", ignore_result=True)
def tenant_probe(key: str, label: str, sent_at: float, seconds: float = 0.0) -> None:
    """Per-tenant queue-lag probe: appends "<label> <tenant id> <start - sent>"
    to the Redis list ``key``, then holds its slot ``seconds`` (a stand-in
    for real work when measuring fairness between tenants)."""
    from apps.caching.connections import redis_client
    from apps.tenancy.context import require_active_tenant

    started = time.time()
    client = redis_client()
    client.rpush(key, f"{label} {require_active_tenant().pk} {started - sent_at:.4f} {started:.4f}")
    client.expire(key, 3600)
    if seconds:
        time.sleep(min(seconds, 60.0))


@shared_task(base=PlatformTask, name="jobs.fairness_sweep", ignore_result=True)
def fairness_sweep() -> int:
    """Wake tasks parked behind slots whose workers died (apps/jobs/fairness.py)."""
    from .fairness import sweep

    return sweep()


@shared_task(base=PlatformTask, name="jobs.unique_probe", ignore_result=True, unique_for=60,
             unique_key=lambda args, kwargs: kwargs.get("key") or (args[0] if args else ""))
def unique_probe(key: str, seconds: float = 0.0) -> None:
    """Uniqueness probe: appends its start time to the Redis list ``key``,
    once per key a minute however often it is enqueued (tests, benchmarks)."""
    from apps.caching.connections import redis_client

    client = redis_client()
    client.rpush(key, time.time())
    client.expire(key, 3600)
    if seconds:
        time.sleep(min(seconds, 60.0))


@shared_task(base=PlatformTask, name="jobs.purge_records", ignore_result=True)
def purge_records() -> dict:
    """Hourly: job records, finished batches and lapsed unique claims past their retention."""
    from .services import job_records_purge

    return job_records_purge()


@shared_task(bind=True, base=PlatformTask, name="jobs.batch_report", ignore_result=True)
def batch_report(self) -> dict:
    """A batch's callback that reports how it went (in the log; the console
    shows the batch): for batches whose outcome nobody else acts on."""
    import logging

    from .batches import batch_progress
    from .models import JobBatch

    batch = JobBatch.objects.filter(pk=self.header("batch_callback")).first()
    if batch is None:
        return {}
    progress = batch_progress(batch)
    logging.getLogger(__name__).info("batch report", extra={key: progress[key] for key in (
        "id", "name", "total", "succeeded", "failed")})
    return progress
