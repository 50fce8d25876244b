"""The platform's own Prometheus metrics (next to django-prometheus's).

prometheus_client's multiprocess mode merges these over processes: gunicorn
workers (see config/gunicorn.conf.py) and Celery's prefork children (see
apps/jobs/metrics.py). The breaker gauge keeps the latest value.

Readings of shared state (queues, dead letters, outboxes, shards,
partitions) are not kept in these files: they are taken at scrape time by the
collectors in apps/ops/collectors.py.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

cache_requests = Counter("saas_cache_requests_total", "Cached reads by outcome", ["namespace", "result"])
rate_limited = Counter("saas_rate_limited_total", "Requests refused by a rate limit", ["tier", "scope"])
shed_requests = Counter("saas_shed_requests_total", "Requests shed under load", ["priority"])
breaker_state = Gauge("saas_circuit_breaker_state", "Circuit state: 0 closed, 1 half-open, 2 open", ["name"],
                      multiprocess_mode="mostrecent")
# Summed over a pod's live gunicorn workers: what the web autoscaler scales on
# (platform/kubernetes/web.yaml, through the Prometheus adapter).
requests_in_flight = Gauge("saas_requests_in_flight", "Requests being served by this pod",
                           multiprocess_mode="livesum")
flag_evaluations = Counter("saas_flag_evaluations_total", "Feature flag evaluations", ["flag", "result"])

# --- tasks (counted in the worker processes, apps/jobs/metrics.py) ----------
TASK_LABELS = ["task", "queue"]
tasks_started = Counter("saas_tasks_started_total", "Task attempts started", TASK_LABELS)
tasks_succeeded = Counter("saas_tasks_succeeded_total", "Task attempts that returned", TASK_LABELS)
tasks_failed = Counter("saas_tasks_failed_total", "Task attempts that raised and were not retried", TASK_LABELS)
tasks_retried = Counter("saas_tasks_retried_total", "Task attempts that asked for a retry", TASK_LABELS)
tasks_dead_lettered = Counter("saas_tasks_dead_lettered_total", "Tasks recorded as dead letters", TASK_LABELS)
# From a second (a search index update) to half an hour (a large export).
task_duration = Histogram("saas_task_duration_seconds", "Run time of a task attempt, whatever its outcome",
                          TASK_LABELS, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800))


class _Registered:
    """This process's default registry, as one collector of another registry."""

    def collect(self):
        return REGISTRY.collect()


def exposition(*extra_collectors) -> bytes:
    """The text a scrape gets: every process's samples (merged from
    PROMETHEUS_MULTIPROC_DIR when set, else this process's), then the
    readings of ``extra_collectors``."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Registered())
    for collector in extra_collectors:
        registry.register(collector)
    return generate_latest(registry)
