"""The overview's readings: the same ones /metrics takes, as plain data.

The console does not query queues, shards, dead letters, outboxes and
partitions its own way: it runs the Prometheus collectors of
apps/ops/collectors.py (and shares their cached readings, so a
console refresh and a scrape cost one reading per METRICS_CACHE_SECONDS) and
turns their metric families into rows. Workers come from the presence
entries they keep in Redis, jobs from the job records. Each source runs in
a thread of its own and the page waits at most CONSOLE_READ_TIMEOUT_SECONDS
for all of them together: a source that is down or slow shows
"unavailable" instead of holding (or failing) the page.
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
    rows: list = field(default_factory=list)  # what a source lists besides its figures (workers, jobs)

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


def workers_source() -> Reading:
    """Workers alive per queue, from the presence entries every worker keeps
    in Redis (apps.jobs.heartbeat): one round trip, bounded by
    REDIS_TIMEOUT_SECONDS. Never a broadcast to the workers, which would
    wait out its whole timeout on every load."""
    from apps.jobs.heartbeat import live_workers

    workers = live_workers()
    per_queue: dict[str, int] = defaultdict(int)
    for worker in workers:
        for queue in worker.get("queues") or []:
            per_queue[queue] += 1
    reading = Reading(name="workers", up=True, rows=workers)
    reading.samples["workers"] = [({"queue": q}, float(n)) for q, n in sorted(per_queue.items())]
    reading.samples["workers_total"] = [({}, float(len(workers)))]
    return reading


# What the overview counts of the job records (each count capped).
JOB_STATES_SHOWN = ("queued", "scheduled", "running", "retrying", "failed", "dead")


def jobs_source() -> Reading:
    """Jobs per state (capped counts, apps.jobs.selectors) and the newest
    retrying and dead ones: what is running, waiting to retry, or gave up."""
    from apps.jobs.selectors import JobFilter, recent_jobs, state_counts

    counts = state_counts(JobFilter(), JOB_STATES_SHOWN)
    reading = Reading(name="jobs", up=True, rows=recent_jobs("retrying") + recent_jobs("dead"))
    reading.samples["jobs"] = [({"state": state}, float(n)) for state, n in counts.items()]
    return reading


OVERVIEW_COLLECTORS = ("queues", "dead_letters", "outboxes", "shards", "partitions")


def overview_readings(timeout: float | None = None) -> dict[str, Reading]:
    sources = {name: collector_source(name) for name in OVERVIEW_COLLECTORS}
    sources["workers"] = workers_source
    sources["jobs"] = jobs_source
    return read_all(sources, timeout)
