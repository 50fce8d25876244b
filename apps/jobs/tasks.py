from __future__ import annotations

import time

from celery import shared_task

from .base import PlatformTask

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
