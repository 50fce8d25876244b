"""The Celery application, configured from Django settings (CELERY_*).

Queues per workload (bulkheads), so one cannot starve another: emails,
exports, search, maintenance and default; the Procfile runs worker groups
per queue with their own concurrency.

Worker loss: on Redis a worker beats on the messages it holds
(apps.jobs.heartbeat), so the visibility timeout can be short and a dead
worker's tasks run again within minutes; on RabbitMQ the broker redelivers
when the connection drops. Celery's log lines never show a task's arguments
or return value (they may hold tokens and signed links).
"""

import os

from celery import Celery
from kombu import Queue

from apps.jobs import metrics as task_metrics
from apps.jobs.heartbeat import UnackedHeartbeat
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
app.steps["consumer"].add(UnackedHeartbeat)
install_task_payload_redaction()
task_metrics.connect()
app.autodiscover_tasks()
