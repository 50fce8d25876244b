"""Task metrics from the Celery processes themselves.

Workers run with task events off (events cost a broker message per state
change), so the workers count for themselves, from Celery's signals:
started, succeeded, failed, retried, dead-lettered and the run time, per task
name and queue. Prefork pool children each write their samples to files in
PROMETHEUS_MULTIPROC_DIR (one directory per worker, made at start when the
environment does not name one), and the worker's main process serves them,
merged, on CELERY_METRICS_PORT; beat serves its own there too, so a missing
worker or beat shows as a missing scrape target.

Every message also gets a ``sent_at`` header (epoch seconds) when it is
published, from the web, a worker or the outbox relay: the queue collector
(apps/ops/collectors.py) reads it off the oldest waiting message
to report how long that has waited.

This module imports no prometheus_client at import time: it is imported by
config/celery_app.py, before the multiprocess directory is chosen, and
prometheus_client picks its storage when first imported.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time

from celery import signals

logger = logging.getLogger(__name__)

METRICS_PORT_VARIABLE = "CELERY_METRICS_PORT"
_started: dict[str, float] = {}
_consuming: list[str] = []
_server_lock = threading.Lock()
_server = None


def prepare_process() -> None:
    """Choose this Celery process's multiprocess directory, before anything
    imports prometheus_client. Only where metrics are served (the port is
    set) and nobody chose already (gunicorn's config, a pod's emptyDir)."""
    if os.environ.get(METRICS_PORT_VARIABLE) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="celery-metrics-")


def _labels(task) -> dict[str, str]:
    delivery = getattr(task.request, "delivery_info", None) or {}
    return {"task": task.name, "queue": delivery.get("routing_key") or ""}


def stamp_sent_at(headers=None, **kwargs) -> None:
    """before_task_publish: when this message entered its queue (again, for a retry)."""
    if headers is not None:
        headers["sent_at"] = time.time()


def count_started(task_id=None, task=None, **kwargs) -> None:
    from apps.observability import metrics

    _started[task_id] = time.perf_counter()
    metrics.tasks_started.labels(**_labels(task)).inc()


def observe_finished(task_id=None, task=None, **kwargs) -> None:
    from apps.observability import metrics

    started = _started.pop(task_id, None)
    if started is not None:
        metrics.task_duration.labels(**_labels(task)).observe(time.perf_counter() - started)


def count_succeeded(sender=None, **kwargs) -> None:
    from apps.observability import metrics

    metrics.tasks_succeeded.labels(**_labels(sender)).inc()


def count_failed(sender=None, **kwargs) -> None:
    from apps.observability import metrics

    metrics.tasks_failed.labels(**_labels(sender)).inc()


def count_retried(sender=None, **kwargs) -> None:
    from apps.observability import metrics

    metrics.tasks_retried.labels(**_labels(sender)).inc()


def count_dead_letter(instance=None, created=False, **kwargs) -> None:
    """post_save of DeadLetter: counted once the row exists, wherever it was written."""
    from apps.observability import metrics

    if created:
        metrics.tasks_dead_lettered.labels(task=instance.task_name, queue=instance.queue).inc()


class _WorkerCollector:
    """What only the worker's main process knows: the queues it consumes."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("saas_worker_consuming", "1 for each queue this worker consumes", labels=["queue"])
        for queue in _consuming:
            family.add_metric([queue], 1)
        yield family


def _serve(port: int, addr: str) -> None:
    """Serve the merged samples of this process and its pool children."""
    global _server
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client import CONTENT_TYPE_LATEST

    from apps.observability.metrics import exposition

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = exposition(_WorkerCollector())
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes are not worth a log line each
            pass

    with _server_lock:
        if _server is None:
            _server = ThreadingHTTPServer((addr, port), Handler)
            _server.daemon_threads = True
            threading.Thread(target=_server.serve_forever, name="metrics-http", daemon=True).start()


def start_metrics_server(**kwargs) -> None:
    """worker_init / beat_init, in the main process before the pool forks:
    start from an empty directory (a previous run's files would add up) and
    serve /metrics on CELERY_METRICS_PORT."""
    from django.conf import settings

    if not settings.CELERY_METRICS_PORT:
        return
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    _serve(settings.CELERY_METRICS_PORT, settings.CELERY_METRICS_BIND)
    logger.info("metrics served", extra={"port": settings.CELERY_METRICS_PORT})


def note_consumed_queues(sender=None, **kwargs) -> None:
    """worker_ready: the queues this worker takes messages from."""
    _consuming[:] = sorted(sender.app.amqp.queues.consume_from or sender.app.amqp.queues)


def mark_child_dead(pid=None, **kwargs) -> None:
    """worker_process_shutdown: drop a pool child's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


def connect() -> None:
    signals.before_task_publish.connect(stamp_sent_at, dispatch_uid="jobs.metrics.sent_at", weak=False)
    signals.task_prerun.connect(count_started, dispatch_uid="jobs.metrics.started", weak=False)
    signals.task_postrun.connect(observe_finished, dispatch_uid="jobs.metrics.finished", weak=False)
    signals.task_success.connect(count_succeeded, dispatch_uid="jobs.metrics.succeeded", weak=False)
    signals.task_failure.connect(count_failed, dispatch_uid="jobs.metrics.failed", weak=False)
    signals.task_retry.connect(count_retried, dispatch_uid="jobs.metrics.retried", weak=False)
    signals.worker_init.connect(start_metrics_server, dispatch_uid="jobs.metrics.worker_server", weak=False)
    signals.beat_init.connect(start_metrics_server, dispatch_uid="jobs.metrics.beat_server", weak=False)
    signals.worker_ready.connect(note_consumed_queues, dispatch_uid="jobs.metrics.consuming", weak=False)
    signals.worker_process_shutdown.connect(mark_child_dead, dispatch_uid="jobs.metrics.child_dead", weak=False)

    from django.db.models.signals import post_save

    post_save.connect(count_dead_letter, sender="jobs.DeadLetter", dispatch_uid="jobs.metrics.dead_letter",
                      weak=False)
