"""Task metrics counted by real workers: a prefork worker with two pool
children serves the merged counts of both on CELERY_METRICS_PORT, and beat
serves its own endpoint (a missing one is a missing scrape target)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from apps.jobs.models import DeadLetter, Effect
from tests.support import ROOT, free_port, process_env
from tests.workers import CeleryWorker, live_broker, wait_until

pytestmark = pytest.mark.live


def scrape(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def value(text: str, name: str, **labels) -> float:
    """The value of one sample (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def test_worker_counts_outcomes_over_its_pool_children(django_db_setup, django_db_blocker):
    port = free_port()
    effect_key = f"metrics-{uuid.uuid4()}"
    with live_broker("redis") as broker, django_db_blocker.unblock():
        from apps.notifications.tasks import send_email
        from config.celery_app import app

        worker = CeleryWorker(broker_url=broker["url"], queues="default,search,emails", concurrency=2,
                              name="metrics", env={"CELERY_METRICS_PORT": str(port),
                                                   "CELERY_METRICS_BIND": "127.0.0.1",
                                                   # nothing listens there: the email attempt fails, retries once
                                                   "EMAIL_PORT": str(free_port()), "EMAIL_MAX_RETRIES": "1",
                                                   "EMAIL_TIMEOUT": "1"}).start()
        try:
            wait_until(lambda: 'saas_worker_consuming{queue="search"} 1.0' in scrape(port), 10,
                       message="worker metrics served")
            for _ in range(4):
                app.send_task("jobs.ping", args=[time.time()], kwargs={"key": f"hk-metrics:{effect_key}"})
            # A tenant task for a tenant that does not exist: a dead letter at once.
            app.send_task("search.index_documents", args=[[1]], headers={"tenant_id": 999_999_999})
            send_email.apply_async(kwargs={"to": ["someone@example.com"], "template": "quota_warning",
                                           "context": {}, "effect_key": effect_key})

            def settled():
                try:
                    text = scrape(port)
                except requests.ConnectionError:  # the listener between two answers: ask again
                    return None
                return text if value(text, "saas_tasks_dead_lettered_total",
                                     task="notifications.send_email", queue="emails") == 1 else None

            text = wait_until(settled, 25, message="the email task dead-lettered", interval=0.5)
            assert value(text, "saas_tasks_started_total", task="jobs.ping", queue="default") == 4
            assert value(text, "saas_tasks_succeeded_total", task="jobs.ping", queue="default") == 4
            assert value(text, "saas_task_duration_seconds_count", task="jobs.ping", queue="default") == 4
            assert value(text, "saas_tasks_failed_total", task="search.index_documents", queue="search") == 1
            assert value(text, "saas_tasks_dead_lettered_total", task="search.index_documents", queue="search") == 1
            assert value(text, "saas_tasks_retried_total", task="notifications.send_email", queue="emails") == 1
            assert value(text, "saas_tasks_started_total", task="notifications.send_email", queue="emails") == 2
            assert value(text, "saas_tasks_failed_total", task="notifications.send_email", queue="emails") == 1
            assert value(text, "saas_worker_consuming", queue="emails") == 1
        finally:
            worker.stop()
            DeadLetter.objects.filter(task_name__in=["search.index_documents", "notifications.send_email"]).delete()
            Effect.objects.filter(key=f"email:{effect_key}").delete()
        # The endpoint goes with the worker: Prometheus sees a target down.
        with pytest.raises(requests.ConnectionError):
            scrape(port)


def test_beat_serves_metrics(django_db_setup):
    port = free_port()
    with live_broker("redis") as broker, tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "beat.log"
        env = process_env(CELERY_BROKER_URL=broker["url"], CELERY_METRICS_PORT=str(port),
                          CELERY_METRICS_BIND="127.0.0.1")
        with log.open("w") as out:
            beat = subprocess.Popen([sys.executable, "-m", "celery", "--app", "config.celery_app", "beat",
                                     "--schedule", f"{directory}/schedule", "--loglevel", "INFO"],
                                    env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            def answers():
                try:
                    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
                except requests.ConnectionError:
                    assert beat.poll() is None, log.read_text()[-3000:]
                    return False

            wait_until(answers, 20, message="beat metrics served", interval=0.2)
        finally:
            beat.terminate()
            beat.wait(15)
