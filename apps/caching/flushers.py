"""Per-process background flushers: one daemon thread per process that calls
``flush`` every ``interval`` seconds, for modules that gather writes on the
request path (a dictionary update under a lock) and send them off it in one
batch (the console's traffic counters, API key uses), or renew what this
process holds (task fairness leases).

What each of them needs, owned here once:

* Started once per process, on first use: ``ensure_started`` costs a pid
  compare and an ``is_alive`` when the thread runs, cheap enough for every
  request. Threads do not survive ``fork``, so a forked child (a gunicorn
  worker, a Celery prefork child) starts its own on its first use; the lock
  is replaced in the child (``os.register_at_fork``), as another thread of
  the parent may have held it at the fork.
* A bounded interval: read before every round (so a changed setting
  applies), and clamped to [MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS]: a
  zero or negative value must not spin a core, a huge one must not hold a
  batch for ever.
* Exception containment: a failing flush is logged and the next round runs
  as usual; starting the thread never raises into the request that asked.
* ``stop`` for tests; a later ``ensure_started`` starts a new thread.

Hand-written: schedulers (Celery beat, APScheduler, timer-loop packages)
either run jobs in one scheduler process or start their thread once at
import, before gunicorn forks its workers; what is flushed here is each
worker's own memory, so the thread must run in every worker and start again
after each fork, which none of them does for us.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

logger = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 0.01
MAX_INTERVAL_SECONDS = 600.0
FALLBACK_INTERVAL_SECONDS = 1.0  # when the interval cannot be read


class Flusher:
    """Calls ``flush()`` every ``interval()`` seconds in a daemon thread named
    ``name``, one per process (see the module doc)."""

    def __init__(self, name: str, flush: Callable[[], object], interval: Callable[[], float]):
        self.name = name
        self._flush = flush
        self._interval = interval
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self._pid = 0
        _flushers.add(self)

    @property
    def running(self) -> bool:
        """Whether this process's thread is alive."""
        thread = self._thread
        return thread is not None and self._pid == os.getpid() and thread.is_alive()

    def ensure_started(self) -> None:
        """Start this process's thread unless it runs already. Never raises."""
        if self.running:
            return
        try:
            with self._lock:
                if self.running:
                    return
                stop = threading.Event()
                thread = threading.Thread(target=self._run, args=(stop,), name=self.name, daemon=True)
                thread.start()
                self._thread, self._stop, self._pid = thread, stop, os.getpid()
        except Exception:  # e.g. no thread can be started now: the next use tries again
            logger.warning("background flusher not started", extra={"flusher": self.name}, exc_info=True)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop this process's thread (after its current round) and wait for it."""
        with self._lock:
            thread, stop, pid = self._thread, self._stop, self._pid
            self._thread = self._stop = None
        if stop is not None:
            stop.set()
        if thread is not None and pid == os.getpid() and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._next_interval()):
            try:
                self._flush()
            except Exception:  # the batch is the flush's to keep or drop; the thread lives on
                logger.warning("background flush failed", extra={"flusher": self.name}, exc_info=True)

    def _next_interval(self) -> float:
        try:
            seconds = float(self._interval())
        except Exception:
            logger.warning("background flusher interval unreadable", extra={"flusher": self.name}, exc_info=True)
            seconds = FALLBACK_INTERVAL_SECONDS
        if not seconds >= MIN_INTERVAL_SECONDS:  # also NaN
            seconds = MIN_INTERVAL_SECONDS
        return min(seconds, MAX_INTERVAL_SECONDS)

    def _forget_in_child(self) -> None:
        self._lock = threading.Lock()
        self._thread = self._stop = None
        self._pid = 0


_flushers: weakref.WeakSet[Flusher] = weakref.WeakSet()


def _forget_in_child() -> None:
    for flusher in list(_flushers):
        flusher._forget_in_child()


os.register_at_fork(after_in_child=_forget_in_child)
