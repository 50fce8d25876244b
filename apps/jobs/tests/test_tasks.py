"""Task messages on a real broker: tenant and request id travel in the headers."""

from __future__ import annotations

import pytest

from apps.observability.context import request_id_var
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


def take(queue: str):
    from config.celery_app import app

    with app.connection_for_read() as connection:
        return connection.SimpleQueue(queue, no_ack=True).get(timeout=5)


def test_a_tenant_task_carries_its_tenant_and_request_id(tenants):
    from apps.observability.context import user_var
    from apps.search.tasks import index_documents

    token, user_token = request_id_var.set("req-777"), user_var.set("42")
    try:
        with tenant_activated(tenants["beta"]):
            index_documents.delay([1, 2])
    finally:
        request_id_var.reset(token)
        user_var.reset(user_token)
    message = take("search")
    assert message.headers["tenant_id"] == tenants["beta"].pk and message.headers["tenant_slug"] == "beta"
    assert message.headers["request_id"] == "req-777" and message.headers["user_id"] == "42"
    assert message.delivery_info["routing_key"] == "search"


def test_the_worker_side_activates_the_tenant_from_the_headers(tenants, django_capture_on_commit_callbacks):
    from apps.content.models import Document
    from apps.search.models import SearchEntry
    from apps.search.tasks import index_documents

    with tenant_activated(tenants["gamma"]):
        doc = Document.objects.create(title="gamma doc")
    result = index_documents.apply(args=[[doc.pk]], headers={"tenant_id": tenants["gamma"].pk})
    assert result.get() == 1
    with tenant_activated(tenants["gamma"]):
        assert SearchEntry.objects.filter(document_id=doc.pk).exists()
    with tenant_activated(tenants["alpha"]):
        assert not SearchEntry.objects.filter(document_id=doc.pk).exists()


def test_a_tenant_task_without_a_tenant_header_is_a_dead_letter(tenants):
    from apps.jobs.models import DeadLetter
    from apps.search.tasks import index_documents

    result = index_documents.apply(args=[[1]])
    assert result.failed()
    assert DeadLetter.objects.filter(task_name="search.index_documents", exception__contains="no tenant").exists()


def test_the_outbox_sweep_fans_out_in_bounded_batches(tenants, settings):
    from apps.outbox.tasks import sweep
    from apps.tenancy.models import Tenant

    settings.OUTBOX_SWEEP_BATCH = 2
    tenant_count = Tenant.objects.exclude(shard=None).count()
    result = sweep.apply().get()
    assert result["tenant_batches"] == -(-tenant_count // 2)
    batches = [take("maintenance").payload[0][0] for _ in range(result["tenant_batches"])]
    assert sorted(sum(batches, [])) == sorted(Tenant.objects.exclude(shard=None).values_list("pk", flat=True))
    assert all(len(batch) <= 2 for batch in batches)


def test_task_log_lines_carry_the_request_tenant_and_user(tenants, caplog):
    import logging

    from apps.observability.logging import ContextFilter
    from apps.search.tasks import index_documents

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("apps.search.services")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        from apps.search import services

        original = services.search_index_documents

        def logged(ids):
            logger.info("indexing %s", ids)
            return original(ids)

        services.search_index_documents = logged
        index_documents.apply(args=[[1]], headers={"tenant_id": tenants["alpha"].pk, "request_id": "req-9",
                                                   "user_id": "7"})
    finally:
        services.search_index_documents = original
        logger.removeHandler(handler)
    line = next(r for r in records if r.getMessage().startswith("indexing"))
    assert (line.request_id, line.tenant, line.user) == ("req-9", "alpha", "7")


def test_rebuild_all_sends_one_message_per_tenant(tenants):
    from apps.search.tasks import rebuild_all
    from apps.tenancy.models import Tenant

    sent = rebuild_all.apply().get()
    tenant_ids = set(Tenant.objects.exclude(shard=None).values_list("pk", flat=True))
    assert sent == len(tenant_ids)
    assert {take("search").headers["tenant_id"] for _ in range(sent)} == tenant_ids


def test_expired_idempotency_keys_are_purged_on_every_shard(tenants):
    import datetime as dt

    from django.utils import timezone

    from apps.idempotency.models import IdempotencyRecord
    from apps.idempotency.tasks import purge

    for slug in ("alpha", "beta"):
        with tenant_activated(tenants[slug]):
            old = IdempotencyRecord.objects.create(client="c", key=f"old-{slug}", fingerprint="f", status_code=201)
            IdempotencyRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(hours=25))
            IdempotencyRecord.objects.create(client="c", key=f"new-{slug}", fingerprint="f", status_code=201)
    assert purge.apply().get() >= 2
    for slug in ("alpha", "beta"):
        with tenant_activated(tenants[slug]):
            assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == [f"new-{slug}"]
