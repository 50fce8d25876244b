"""Job records, worker presence and unique jobs with real Celery workers on a
private Redis broker: what a worker records of each task's states, that the
console's overview finds workers without asking them anything, that a
killed worker's entry lapses, and that any number of enqueues of one unique
key, directly or through the outbox, run once."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connections, transaction

from apps.jobs.heartbeat import live_workers
from apps.jobs.models import DeadLetter, Job, OutboxMessage
from tests.support import free_port
from tests.workers import CeleryWorker, live_broker, wait_until

pytestmark = pytest.mark.live

OPERATOR = ("jobs-live@console.test", "jobs-live-pass")
# Short intervals so that the test sees what production sees in seconds.
FAST = {"WORKER_PRESENCE_SECONDS": "0.5", "JOB_RECORD_FLUSH_SECONDS": "0.2"}


@pytest.fixture(scope="module")
def broker():
    with live_broker("redis") as broker:
        yield broker


@pytest.fixture(scope="module")
def worker(broker, tenants, django_db_blocker):
    """One worker for the module: emails, search and default, two processes."""
    env = {**FAST, "EMAIL_PORT": str(free_port()), "EMAIL_MAX_RETRIES": "1", "EMAIL_TIMEOUT": "1"}
    started = CeleryWorker(broker_url=broker["url"], queues="default,search,emails", concurrency=2, name="jobs",
                           env=env).start()
    yield started
    started.stop()


def hostname_of(worker: CeleryWorker) -> str:
    return next(arg for arg in worker.args if "@" in arg).replace("%h", __import__("socket").gethostname())


def rows(task_ids) -> dict[str, Job]:
    return {row.pk: row for row in Job.objects.filter(pk__in=list(task_ids))}


def test_the_worker_records_each_task_state(worker, django_db_blocker, tenants):
    from apps.jobs.records import flush
    from apps.notifications.tasks import send_email
    from config.celery_app import app

    with django_db_blocker.unblock():
        ok = app.send_task("jobs.ping", args=[time.time()], kwargs={"key": f"jobs-live:{uuid.uuid4()}"})
        # A tenant that does not exist: straight to the dead letters.
        dead = app.send_task("search.index_documents", args=[[1]], headers={"tenant_id": 999_999_999})
        # Nothing listens on EMAIL_PORT: one retry, then the dead letters.
        retried = send_email.apply_async(kwargs={"to": ["someone@example.com"], "template": "quota_warning",
                                                 "context": {}, "effect_key": f"jobs-live-{uuid.uuid4()}"},
                                         headers={"tenant_id": tenants["alpha"].pk, "tenant_slug": "alpha"})
        ids = [ok.id, dead.id, retried.id]
        flush()  # this process's publishes now, not within its flush interval
        try:
            seen = wait_until(lambda: (r := rows(ids)) and all(
                r.get(i) and r[i].state in ("succeeded", "dead") for i in ids) and r, 40,
                message="records settle", interval=0.3)
            host = hostname_of(worker)
            assert (seen[ok.id].state, seen[ok.id].attempts, seen[ok.id].worker) == ("succeeded", 1, host)
            assert seen[ok.id].runtime is not None and seen[ok.id].queue == "default"
            letter = DeadLetter.objects.get(task_id=dead.id)
            assert (seen[dead.id].state, seen[dead.id].dead_letter_id) == ("dead", letter.pk)
            assert "PermanentError" in seen[dead.id].error
            email = seen[retried.id]
            assert (email.state, email.attempts, email.tenant_slug, email.queue) == ("dead", 2, "alpha", "emails")
            # Written by two processes' flushers in any order; read in the order they happened.
            states = [entry["s"] for entry in sorted(email.history, key=lambda entry: entry["t"])]
            # The last attempt's refused retry may be recorded as "retrying" just before "dead".
            last = [state for state in states[3:] if state != "retrying"]
            assert states[:3] == ["queued", "running", "retrying"] and last[-2:] == ["running", "dead"], states
        finally:
            Job.objects.filter(pk__in=ids).delete()
            DeadLetter.objects.filter(task_id__in=ids).delete()


def test_the_overview_finds_workers_by_their_presence_without_a_broadcast(worker, django_db_blocker, monkeypatch,
                                                                          settings):
    from celery.app.control import Control

    from apps.accounts.models import User
    from apps.backoffice.tests.test_console import CONSOLE, logged_in

    calls = []
    for name in ("broadcast", "inspect", "ping"):
        original = getattr(Control, name)
        monkeypatch.setattr(Control, name, lambda self, *a, _n=name, _o=original, **k: calls.append(_n) or _o(
            self, *a, **k))
    host = hostname_of(worker)
    entry = wait_until(lambda: next((w for w in live_workers() if w["hostname"] == host), None), 10,
                       message="worker present")
    assert entry["queues"] == ["default", "emails", "search"] and entry["concurrency"] == 2
    settings.METRICS_CACHE_SECONDS = 0
    with django_db_blocker.unblock():
        User.objects.filter(email=OPERATOR[0]).delete()
        User.objects.create_superuser(email=OPERATOR[0], password=OPERATOR[1])
        try:
            page = logged_in(*OPERATOR).get(CONSOLE)
        finally:
            User.objects.filter(email=OPERATOR[0]).delete()
    html = page.content.decode()
    assert page.status_code == 200 and f'data-worker="{host}"' in html
    assert calls == []


def test_a_stopped_worker_leaves_at_once_and_a_killed_one_lapses(broker):
    # A long interval: only its goodbye can remove it within the test's wait.
    polite = CeleryWorker(broker_url=broker["url"], queues="maintenance", name="polite",
                          env={"WORKER_PRESENCE_SECONDS": "20"}).start()
    polite_host = hostname_of(polite)
    killed = CeleryWorker(broker_url=broker["url"], queues="maintenance", name="killed", env=FAST).start()
    killed_host = hostname_of(killed)
    try:
        wait_until(lambda: {polite_host, killed_host} <= {w["hostname"] for w in live_workers()}, 10,
                   message="both present")
        polite.stop()
        wait_until(lambda: polite_host not in {w["hostname"] for w in live_workers()}, 5, message="goodbye")
        killed.kill()
        gone_by = time.monotonic() + 3 * 0.5 + 1.0  # three intervals, and one more for the reading
        wait_until(lambda: killed_host not in {w["hostname"] for w in live_workers()}, 5, message="lapsed")
        assert time.monotonic() < gone_by
    finally:
        polite.stop()
        killed.stop()


def test_a_hundred_enqueues_of_one_unique_key_run_once_directly_or_through_the_outbox(worker, django_db_blocker):
    from apps.caching.connections import redis_client
    from apps.jobs.records import flush
    from apps.jobs.services import control_outbox_enqueue
    from apps.jobs.tasks import unique_probe

    key = f"jobs-live:unique:{uuid.uuid4()}"
    ids: list[str] = []
    lock = threading.Lock()

    def direct(_):
        result = unique_probe.apply_async(kwargs={"key": key})
        with lock:
            ids.append(result.id)

    def through_outbox(_):
        try:
            with django_db_blocker.unblock(), transaction.atomic():
                message = control_outbox_enqueue(unique_probe, kwargs={"key": key})
            with lock:
                ids.append(str(message.pk))
        finally:
            connections.close_all()  # this thread's own

    with django_db_blocker.unblock():
        try:
            threads = [threading.Thread(target=f, args=(n,)) for n in range(100) for f in (direct, through_outbox)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            flush()
            settled = wait_until(lambda: (r := rows(ids)) and len(r) == 200 and all(
                row.state in ("succeeded", "skipped") for row in r.values()) and r, 40, message="all ran or skipped",
                interval=0.3)
            assert redis_client().llen(key) == 1
            states = sorted(row.state for row in settled.values())
            assert states.count("succeeded") == 1 and states.count("skipped") == 199
            winner = next(row.pk for row in settled.values() if row.state == "succeeded")
            assert all(row.error == f"duplicate of {winner}" for row in settled.values() if row.state == "skipped")
        finally:
            Job.objects.filter(pk__in=ids).delete()
            OutboxMessage.objects.filter(pk__in=[i for i in ids if len(i) == 36]).delete()
            redis_client().delete(key)


def test_two_clicks_on_rebuild_index_rebuild_once(worker, tenants, django_db_blocker):
    from apps.accounts.models import User
    from apps.backoffice.tests.test_console import CONSOLE, logged_in
    from apps.caching.connections import redis_client
    from apps.jobs.models import UniqueClaim
    from apps.jobs.uniqueness import _redis_key
    from apps.search.models import IndexRebuild
    from apps.tenancy.activation import tenant_activated

    alpha = tenants["alpha"]
    key = f"search.rebuild_index:{alpha.pk}:index"
    with django_db_blocker.unblock():
        redis_client().delete(_redis_key(key))  # an earlier run's window
        UniqueClaim.objects.filter(key=key).delete()
        with tenant_activated(alpha):
            before = IndexRebuild.objects.count()
        User.objects.filter(email=OPERATOR[0]).delete()
        User.objects.create_superuser(email=OPERATOR[0], password=OPERATOR[1])
        try:
            client = logged_in(*OPERATOR)
            for reason in ("search looks stale", "still stale?"):
                assert client.post(f"{CONSOLE}tenants/alpha/reindex/", {"reason": reason}).status_code == 302

            def rebuilt() -> int:
                with tenant_activated(alpha):
                    return IndexRebuild.objects.filter(finished_at__isnull=False).count() - before

            wait_until(lambda: Job.objects.filter(task_name="search.rebuild_index", tenant_id=alpha.pk,
                                                  state="skipped").exists(), 30, message="the second skipped")
            assert wait_until(rebuilt, 30, message="one rebuild") == 1
            with tenant_activated(alpha):
                assert IndexRebuild.objects.count() - before == 1
        finally:
            User.objects.filter(email=OPERATOR[0]).delete()
            Job.objects.filter(task_name="search.rebuild_index").delete()
