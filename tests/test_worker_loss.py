"""Work whose worker died runs again within minutes, on Redis and on RabbitMQ.

A real worker is killed (SIGKILL of its whole process group: no goodbye to
the broker) in the middle of an export; a standby worker, idle on the same
queue, picks the export up: on RabbitMQ when the dead connection drops, on Redis once the visibility
timeout passed since the dead worker's last heartbeat. The export API shows
the second attempt. A live worker's long export, meanwhile, is never handed
to another worker, however short the visibility timeout.

The tests shorten the visibility timeout to seconds. To measure with the
production defaults (CELERY_VISIBILITY_TIMEOUT=300, restore every 10 s):

    WORKER_LOSS_PRODUCTION_DEFAULTS=1 ./bin/dev test tests/test_worker_loss.py -k died -s
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.content.models import Document
from tests.support import committed_tenant
from tests.workers import CeleryWorker, live_broker, table_locked
from tests.workers import wait_until as _wait_until

pytestmark = pytest.mark.live

PRODUCTION_DEFAULTS = os.environ.get("WORKER_LOSS_PRODUCTION_DEFAULTS") == "1"
# (visibility timeout, restore interval) of the workers under test.
TIMING = ("300", "10") if PRODUCTION_DEFAULTS else ("3", "1")


def wait_until(predicate, timeout: float, message: str):
    """Poll the API about once a second: more would meet its rate limit."""
    return _wait_until(predicate, timeout, interval=1.0, message=message)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request):
    with live_broker(request.param) as broker:
        yield broker


@contextmanager
def exporting_tenant(slug: str, documents: int):
    """A committed tenant with documents, and an API client of its owner."""
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token

    with committed_tenant(slug) as tenant:
        owner = User.objects.get(email=f"owner@{slug}.test")
        client = Client(HTTP_HOST=f"{slug}.localhost",
                        HTTP_AUTHORIZATION=f"Bearer {issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)}")
        response = client.post("/api/v1/documents/bulk",
                               {"documents": [{"title": f"doc {i}"} for i in range(documents)]},
                               content_type="application/json")
        assert response.status_code in (200, 201), response.content
        yield tenant, client


def documents_locked(tenant):
    """The export's first query waits here: the export is running, mid-way."""
    return table_locked(tenant.shard.alias, tenant.schema_name, Document._meta.db_table)


def export_status(client, url: str) -> dict:
    """The export as the API shows it ({} when polling too fast for the rate limit)."""
    response = client.get(url)
    if response.status_code == 429:
        return {}
    assert response.status_code == 200, response.content
    return response.json()


def start_export(client) -> str:
    response = client.post("/api/v1/exports", {"kind": "documents", "format": "csv"}, content_type="application/json")
    assert response.status_code == 202, response.content
    return response["Location"]


def test_an_export_whose_worker_died_runs_again_and_the_api_says_so(tenants, django_db_blocker, broker, settings,
                                                                     tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.EXPORT_STALL_SECONDS = 4
    visibility, restore = TIMING
    env = {"MEDIA_ROOT": str(tmp_path), "CELERY_VISIBILITY_TIMEOUT": visibility,
           "CELERY_UNACKED_RESTORE_INTERVAL": restore}
    workers = []
    with django_db_blocker.unblock(), exporting_tenant(f"loss-{broker['kind']}", 25) as (tenant, client):
        try:
            doomed = CeleryWorker(broker_url=broker["url"], queues="exports", env=env, name="doomed").start()
            workers.append(doomed)
            with documents_locked(tenant):
                url = start_export(client)
                first = wait_until(lambda: (s := export_status(client, url)).get("status") == "running" and s, 30,
                                   message="the export is running")
                assert first["attempts"] == 1 and first["status_label"] == "running"
                # No progress for EXPORT_STALL_SECONDS: the API calls it stalled.
                stalled = wait_until(lambda: (s := export_status(client, url)).get("stalled") and s, 10,
                                     message="shown as stalled")
                assert stalled["status_label"] == "stalled (attempt 1)"

                # A standby worker on the same queue: the time measured is the
                # broker's, not a worker's start-up.
                workers.append(CeleryWorker(broker_url=broker["url"], queues="exports", env=env,
                                            name="standby").start())
                doomed.kill()
                killed_at = timezone.now()
                again = wait_until(lambda: (s := export_status(client, url)).get("attempts") == 2 and s,
                                   int(visibility) + 3 * int(restore) + 60, message="the export runs again")
                # heartbeat_at: when attempt 2 started (it waits on the lock, no later beat).
                resumed_after = (parse_datetime(again["heartbeat_at"]) - killed_at).total_seconds()
                assert again["status"] == "running" and again["status_label"] == "running (attempt 2)"
                assert not again["stalled"]
            done = wait_until(lambda: (s := export_status(client, url)).get("status") == "done" and s, 30,
                              message="the export finished")
            assert done["attempts"] == 2 and done["rows_done"] == done["rows_total"] == 25
            assert done["status_label"] == "done"
            download = client.get(done["download_url"], HTTP_AUTHORIZATION="")
            assert download.status_code == 200
            assert b"".join(download.streaming_content).decode().count("\n") == 26  # header + rows
        finally:
            for worker in workers:
                worker.stop()
    print(f"\n[worker-loss] {broker['kind']}: kill -> running again in {resumed_after:.1f} s "
          f"(visibility timeout {visibility} s, restore every {restore} s)", file=sys.stderr)
    if broker["kind"] == "redis":
        # Redelivered once the timeout passed since the dead worker's last
        # heartbeat (beats every timeout / 5), at the next restore.
        assert resumed_after < int(visibility) + 2 * int(restore) + 10


def test_a_live_workers_long_export_is_not_handed_to_another_worker(tenants, django_db_blocker, settings, tmp_path):
    """Redis: the heartbeat keeps the running export's message fresh; with a
    3 s visibility timeout and a standby worker, an export held 4x as long
    still runs once."""
    settings.MEDIA_ROOT = str(tmp_path)
    env = {"MEDIA_ROOT": str(tmp_path), "CELERY_VISIBILITY_TIMEOUT": "3", "CELERY_UNACKED_RESTORE_INTERVAL": "1"}
    workers = []
    with live_broker("redis") as broker, django_db_blocker.unblock(), \
            exporting_tenant("loss-live", 5) as (tenant, client):
        try:
            workers.append(CeleryWorker(broker_url=broker["url"], queues="exports", env=env, name="busy").start())
            with documents_locked(tenant):
                url = start_export(client)
                wait_until(lambda: export_status(client, url).get("status") == "running", 30, message="running")
                workers.append(CeleryWorker(broker_url=broker["url"], queues="exports", env=env,
                                            name="standby").start())
                time.sleep(12)  # four visibility timeouts
                assert export_status(client, url).get("attempts", 1) == 1
            done = wait_until(lambda: (s := export_status(client, url)).get("status") == "done" and s, 30,
                              message="the export finished")
            assert done["attempts"] == 1
            assert "run_export[" not in workers[1].log_text()
        finally:
            for worker in workers:
                worker.stop()
