"""A whole-tenant export whose worker is killed (SIGKILL of its process
group) goes on in another worker from its last finished table."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.lifecycle.models import TenantExport
from tests.support import committed_tenant
from tests.workers import CeleryWorker, live_broker, table_locked, wait_until

pytestmark = pytest.mark.live

# Tables are written in name order: the export waits on this one, after
# the analytics, audit, content and outbox tables are checkpointed.
HELD_TABLE = "search_searchentry"


def test_a_killed_export_worker_is_followed_by_one_that_resumes(tenants, django_db_blocker, settings, tmp_path):
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token

    env = {"MEDIA_ROOT": str(tmp_path / "media"), "TENANT_EXPORT_WORK_DIR": str(tmp_path / "work"),
           "TENANT_EXPORT_HEARTBEAT_SECONDS": "0", "CELERY_VISIBILITY_TIMEOUT": "3",
           "CELERY_UNACKED_RESTORE_INTERVAL": "1"}
    settings.MEDIA_ROOT = env["MEDIA_ROOT"]
    workers = []
    with live_broker("redis") as broker, django_db_blocker.unblock(), committed_tenant("life-kill") as tenant:
        owner = User.objects.get(email="owner@life-kill.test")
        client = Client(HTTP_HOST="life-kill.localhost",
                        HTTP_AUTHORIZATION=f"Bearer {issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)}")
        client.post("/api/v1/documents/bulk", {"documents": [{"title": f"doc {i}"} for i in range(50)]},
                    content_type="application/json")
        try:
            doomed = CeleryWorker(broker_url=broker["url"], queues="exports", env=env, name="doomed").start()
            workers.append(doomed)
            with table_locked(tenant.shard.alias, tenant.schema_name, HELD_TABLE):
                created = client.post("/api/v1/tenant-exports")
                assert created.status_code == 202, created.content
                export_id = created.json()["id"]
                held = wait_until(lambda: (e := TenantExport.objects.filter(pk=export_id).first())
                                  and e.current_part == f"tables/{HELD_TABLE}.jsonl" and e, 60,
                                  message="the export waits on the held table")
                first_parts = set(held.tables) - {"_migrations"}
                assert held.attempts == 1 and len(first_parts) >= 5
                workers.append(CeleryWorker(broker_url=broker["url"], queues="exports", env=env,
                                            name="standby").start())
                doomed.kill()
            done = wait_until(lambda: (e := TenantExport.objects.filter(pk=export_id).first())
                              and e.status == "done" and e, 60, message="the export finished in the standby")
        finally:
            for worker in workers:
                worker.stop()
    assert done.attempts == 2
    assert {name for name, meta in done.tables.items() if meta.get("attempt") == 1} == first_parts
    assert done.tables[f"tables/{HELD_TABLE}.jsonl"]["attempt"] == 2
    assert done.tables["tables/content_document.jsonl"]["rows"] == 50
