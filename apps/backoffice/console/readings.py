"""The overview's readings: the same ones /metrics takes, as plain data.

The console does not query queues, shards, dead letters, outboxes and
partitions its own way: it runs the Prometheus collectors of
apps/ops/collectors.py (and shares their cached readings, so a
console refresh and a scrape cost one reading per METRICS_CACHE_SECONDS) and
turns their metric families into rows. Each source runs in a thread of its
own and the page waits at most CONSOLE_READ_TIMEOUT_SECONDS for all of them
together: a source that is down or slow shows "unavailable" instead of
holding (or failing) the page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class Reading:
    """One source's families as {metric name: [(labels, value), ...]}; ``up`` False when
    it failed or did not answer in time (``error`` says which)."""

    name: str
    up: bool = False
    samples: Samples = field(default_factory=dict)
    error: str = ""

    def series(self, metric: str) -> list[tuple[dict[str, str], float]]:
        return self.samples.get(metric, [])

    def by(self, metric: str, label: str) -> dict[str, float]:
        return {labels.get(label, ""): value for labels, value in self.series(metric)}


def read_timeout() -> float:
    return settings.CONSOLE_READ_TIMEOUT_SECONDS


def _families_to_reading(name: str, families) -> Reading:
    reading = Reading(name=name)
    samples: Samples = defaultdict(list)
    up = None
    for family in families:
        for sample in family.samples:
            if sample.name == "saas_metrics_collector_up":
                up = bool(sample.value)
                continue
            samples[sample.name].append((dict(sample.labels), float(sample.value)))
    reading.samples = dict(samples)
    reading.up = bool(up) if up is not None else True
    if not reading.up:
        reading.error = "the last reading failed"
    return reading


def _run(name: str, read, results: dict[str, Reading]) -> None:
    try:
        results[name] = read()
    except Exception as exc:  # shown as unavailable, never raised into the page
        logger.warning("console reading failed", extra={"source": name, "error": str(exc)[:200]})
        results[name] = Reading(name=name, error=f"{type(exc).__name__}: {str(exc)[:200]}")
    finally:
        connections.close_all()  # this thread's own connections


def read_all(sources: dict[str, callable], timeout: float | None = None) -> dict[str, Reading]:
    """Run each source (a callable returning a Reading) in its own thread;
    whatever has not answered within ``timeout`` is an unavailable Reading."""
    timeout = read_timeout() if timeout is None else timeout
    results: dict[str, Reading] = {}
    threads = []
    for name, read in sources.items():
        thread = threading.Thread(target=_run, args=(name, read, results), name=f"console-{name}", daemon=True)
        thread.start()
        threads.append((name, thread))
    deadline = time.monotonic() + timeout
    for name, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {name: results.get(name) or Reading(name=name, error=f"no answer within {timeout:g} s")
            for name, _ in threads}


def collector_source(name: str):
    """A source reading the platform collector ``name`` (shared with /metrics)."""
    from apps.ops.collectors import PLATFORM_COLLECTORS

    collector = next(c for c in PLATFORM_COLLECTORS if c.name == name)
    return lambda: _families_to_reading(name, collector.collect())


_workers_cache: dict[str, tuple[float, Reading]] = {}
_workers_lock = threading.Lock()


def workers_source() -> Reading:
    """Workers alive per queue: a broadcast ping through the broker, answered
    by each worker with the queues it consumes. A broadcast waits out its
    whole timeout (it cannot know how many workers will answer), so the
    timeout is short (1 s) and a reading is reused for METRICS_CACHE_SECONDS,
    as the collectors' are."""
    # The project's app (config.celery_app makes itself current when Django
    # loads config), without importing the project configuration from apps.
    from celery import current_app as app

    with _workers_lock:
        at, cached = _workers_cache.get("workers", (float("-inf"), None))
        if cached is not None and time.monotonic() - at < settings.METRICS_CACHE_SECONDS:
            return cached
        timeout = min(1.0, max(0.2, read_timeout() - 0.5))
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
        per_queue: dict[str, int] = defaultdict(int)
        for queues in replies.values():
            for queue in queues or []:
                per_queue[queue.get("name", "")] += 1
        reading = Reading(name="workers", up=True)
        reading.samples["workers"] = [({"queue": q}, float(n)) for q, n in sorted(per_queue.items())]
        reading.samples["workers_total"] = [({}, float(len(replies)))]
        _workers_cache["workers"] = (time.monotonic(), reading)
        return reading


OVERVIEW_COLLECTORS = ("queues", "dead_letters", "outboxes", "shards", "partitions")


def overview_readings(timeout: float | None = None) -> dict[str, Reading]:
    sources = {name: collector_source(name) for name in OVERVIEW_COLLECTORS}
    sources["workers"] = workers_source
    return read_all(sources, timeout)
