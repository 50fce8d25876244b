"""Waking a tenant's delivery run: at most one queued per tenant.

A write that records events hands its tenant to this process's waker thread
after commit (a put that never waits; the request does not talk to Redis or
the broker). The thread queues one ``webhooks.deliver`` message for the
tenant unless one is queued already (a Redis flag, SET NX with a short
expiry), so a tenant writing 100,000 documents has one message in the
queue, not 100,000, and every other tenant's run is queued behind at most
one run of it (docs/webhooks.md#fairness-between-tenants).

Nothing is lost when a wake-up is: the deliveries are rows, and beat's
``webhooks.sweep`` wakes every tenant that has one due.
"""

from __future__ import annotations

import logging
import os
import queue
import threading

from django.conf import settings

from apps.caching.connections import redis_client

logger = logging.getLogger(__name__)

# Long enough to cover a queued message's wait in a normal backlog; a flag
# whose message was lost stops blocking wake-ups after it.
FLAG_SECONDS = 30


def flag_key(tenant_id: int) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:webhooks:queued:{tenant_id}"


def wake(tenant_id: int, tenant_slug: str) -> bool:
    """Queue a delivery run for the tenant unless one is queued; True if this call queued it."""
    from .tasks import deliver

    client = redis_client()
    if not client.set(flag_key(tenant_id), 1, nx=True, ex=FLAG_SECONDS):
        return False
    try:
        deliver.apply_async(headers={"tenant_id": tenant_id, "tenant_slug": tenant_slug})
    except Exception:
        client.delete(flag_key(tenant_id))  # the sweep may try again at once
        raise
    return True


def started(tenant_id: int) -> None:
    """A run began: writes committed from now on need a run of their own."""
    try:
        redis_client().delete(flag_key(tenant_id))
    except Exception:
        logger.warning("webhook wake-up flag not cleared", exc_info=True)


class _Waker:
    """One daemon thread per process (again in a forked child) that wakes
    tenants handed to it after their writes commit."""

    def __init__(self):
        self._pid: int | None = None
        self._queue: queue.Queue | None = None
        self._lock = threading.Lock()

    def submit(self, tenant_id: int, tenant_slug: str) -> None:
        if self._pid != os.getpid():
            self._start()
        try:
            self._queue.put_nowait((tenant_id, tenant_slug))
        except queue.Full:
            pass  # the sweep wakes it

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until what was submitted has been handled (tests, benchmarks)."""
        import time

        deadline = time.monotonic() + timeout
        while self._pid == os.getpid() and self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue(maxsize=10_000)
            threading.Thread(target=self._run, args=(self._queue,), name="webhook-waker", daemon=True).start()
            self._pid = os.getpid()

    @staticmethod
    def _run(jobs: queue.Queue) -> None:
        while True:
            tenant_id, slug = jobs.get()
            try:
                wake(tenant_id, slug)
            except Exception:  # Redis or the broker down: the sweep wakes the tenant later
                logger.warning("webhook wake-up failed; the sweep will retry", exc_info=True)
            finally:
                jobs.task_done()


waker = _Waker()
os.register_at_fork(after_in_child=lambda: setattr(waker, "_lock", threading.Lock()))
