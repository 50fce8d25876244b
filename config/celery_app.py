"""The Celery application, configured from Django settings (CELERY_*).

Queues per workload (bulkheads), so one cannot starve another: emails,
exports, search, maintenance and default; the Procfile runs worker groups
per queue with their own concurrency.
"""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _queues():
    from django.conf import settings

    # Quorum queues on RabbitMQ: replicated and durable, the recommended
    # type for work that must not be lost.
    arguments = {"x-queue-type": "quorum"} if settings.BROKER_IS_AMQP else None
    return [Queue(name, routing_key=name, queue_arguments=arguments) for name in settings.TASK_QUEUES]


app.conf.task_queues = _queues()
app.autodiscover_tasks()
