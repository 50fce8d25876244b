"""The Celery application, configured from Django settings (CELERY_*).

Queues per workload (bulkheads), so one cannot starve another: emails,
exports, search, maintenance and default; the Procfile runs worker groups
per queue with their own concurrency.

Worker loss: on Redis a worker beats on the messages it holds
(apps.jobs.heartbeat), so the visibility timeout can be short and a dead
worker's tasks run again within minutes; on RabbitMQ the broker redelivers
when the connection drops. Each worker also records its presence in Redis
(apps.jobs.heartbeat.WorkerPresence), and every task's states go to its
job record (apps.jobs.records). Celery's log lines never show a task's arguments
or return value (they may hold tokens and signed links).
"""

import os

from celery import Celery, signals
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from apps.jobs import metrics as task_metrics
from apps.jobs import records as job_records
from apps.jobs.heartbeat import UnackedHeartbeat, WorkerPresence
from apps.observability.logging import install_task_payload_redaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Before anything imports prometheus_client (see apps/jobs/metrics.py).
task_metrics.prepare_process()

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _queues():
    from django.conf import settings

    # Quorum queues on RabbitMQ: replicated and durable, the recommended
    # type for work that must not be lost.
    arguments = {"x-queue-type": "quorum"} if settings.BROKER_IS_AMQP else None
    return [Queue(name, routing_key=name, queue_arguments=arguments) for name in settings.TASK_QUEUES]


app.conf.task_queues = _queues()
# Fairness between tenants within a queue (apps/jobs/fairness.py): how long
# a running task's slot outlives its last renewal (a killed worker's slot
# frees after this), and how often beat wakes tasks parked behind such slots.
# (Read here, not in config.settings: apps import this module, and apps may
# not import the settings package.)
def _seconds(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not value >= minimum:
        raise ImproperlyConfigured(f"{name} must be a number of seconds >= {minimum}, not {raw!r}")
    return value


app.conf.fairness_lease_seconds = _seconds("TASK_FAIRNESS_LEASE_SECONDS", 30, minimum=1)
app.conf.beat_schedule = {**app.conf.beat_schedule, "fairness-sweep": {
    "task": "jobs.fairness_sweep", "schedule": _seconds("TASK_FAIRNESS_SWEEP_SECONDS", 5, minimum=0.5)}}
app.conf.task_routes = {**app.conf.task_routes, "jobs.fairness_sweep": {"queue": "maintenance"}}
# Job records past their retention go hourly (apps/jobs/records.py).
app.conf.beat_schedule = {**app.conf.beat_schedule, "purge-job-records": {
    "task": "jobs.purge_records", "schedule": 3600}}
app.conf.task_routes = {**app.conf.task_routes, "jobs.purge_records": {"queue": "maintenance"}}
app.steps["consumer"].add(UnackedHeartbeat)
# Each worker's presence for the console, in Redis (no broadcast to ask).
app.steps["consumer"].add(WorkerPresence)
install_task_payload_redaction()
task_metrics.connect()
job_records.connect()
app.autodiscover_tasks()


# Tracing (when OTEL_* turns it on) starts in each pool process after the
# fork, never in the parent: its exporter thread would not survive a fork.
@signals.worker_process_init.connect(weak=False)
def _trace_pool_process(**kwargs) -> None:
    from apps.observability.tracing import init_process

    init_process("worker")


@signals.beat_init.connect(weak=False)
def _trace_beat(**kwargs) -> None:
    from apps.observability.tracing import init_process

    init_process("beat")
