"""The task system under faults, with real brokers and real worker processes.

Each test runs with Redis (a private redis-server) and with RabbitMQ (the
machine's, on 5672, when it answers) as the broker.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connections
from django.test import Client

from apps.jobs.models import DeadLetter, Effect
from apps.notifications.tasks import send_email
from apps.outbox.models import TenantOutboxMessage
from apps.search.models import SearchEntry
from apps.search.tasks import index_documents
from apps.tenancy.activation import tenant_activated
from apps.tenancy.context import NoActiveTenant
from tests.support import committed_tenant, free_port
from tests.workers import CeleryWorker, SmtpSink, live_broker, wait_until

pytestmark = pytest.mark.live


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request):
    with live_broker(request.param) as broker:
        yield broker


def test_a_tenant_task_without_a_tenant_fails_at_enqueue(tenants):
    with pytest.raises(NoActiveTenant, match="tenant task"):
        index_documents.delay([1])


def test_worker_killed_mid_task_the_email_still_goes_out_exactly_once(tenants, django_db_blocker, broker,
                                                                       clean_breaker):
    sink = SmtpSink(slow_first_rcpt=8).start()
    worker_env = {"EMAIL_PORT": str(sink.port)}
    key = f"kill-test-{uuid.uuid4()}"
    first = CeleryWorker(broker_url=broker["url"], queues="emails", env=worker_env, name="first").start()
    try:
        with django_db_blocker.unblock():
            send_email.apply_async(kwargs={"to": ["someone@example.com"], "template": "quota_warning",
                                           "context": {"tenant_name": "Kill Test", "quota": "documents",
                                                       "used": 9, "limit": 10, "plan": "Free", "percent": 90},
                                           "effect_key": key})
            wait_until(sink.rcpt_waiting.is_set, 30, message="the worker is mid-send")
            first.kill()
            assert sink.messages == []
            second = CeleryWorker(broker_url=broker["url"], queues="emails", env=worker_env, name="second").start()
            try:
                wait_until(lambda: sink.messages, 60, message="the redelivered task sent the email")
                wait_until(lambda: Effect.objects.filter(key=f"email:{key}", done=True).exists(), 10,
                           message="effect marked done")
                # The same effect again (a duplicate delivery) sends nothing more.
                send_email.apply_async(kwargs={"to": ["someone@example.com"], "template": "quota_warning",
                                               "context": {"tenant_name": "x", "quota": "documents", "used": 9,
                                                           "limit": 10, "plan": "Free", "percent": 90},
                                               "effect_key": key})
                wait_until(lambda: "already sent" in second.log_text() or "succeeded" in second.log_text().split(
                    "already")[-1], 30, message="duplicate processed")
                assert len(sink.messages) == 1
                assert key in sink.messages[0]["data"]  # the Message-ID carries the effect key
            finally:
                second.stop()
    finally:
        first.stop()
        sink.stop()


def test_a_failing_task_ends_in_the_dead_letters_and_replays_after_the_fix(tenants, django_db_blocker, broker,
                                                                           clean_breaker):
    from django.core.management import call_command

    smtp_port = free_port()  # nothing listens yet: the provider is down
    worker = CeleryWorker(broker_url=broker["url"], queues="emails",
                          env={"EMAIL_PORT": str(smtp_port), "EMAIL_MAX_RETRIES": "2"}, name="dlq").start()
    sink = None
    try:
        with django_db_blocker.unblock():
            key = f"dlq-{uuid.uuid4()}"
            with tenant_activated(tenants["alpha"]):
                send_email.apply_async(kwargs={"to": ["ops@example.com"], "template": "quota_warning",
                                               "context": {"tenant_name": "Alpha", "quota": "documents", "used": 8,
                                                           "limit": 10, "plan": "Free", "percent": 80},
                                               "effect_key": key},
                                       headers={"tenant_id": tenants["alpha"].pk, "tenant_slug": "alpha"})
            letter = wait_until(lambda: DeadLetter.objects.filter(kwargs__effect_key=key).first(), 60,
                                message="dead letter recorded")
            assert letter.attempts == 3 and letter.task_name == "notifications.send_email"
            assert letter.tenant_slug == "alpha" and "RetryLater" in letter.exception
            assert letter.first_failed_at <= letter.last_failed_at
            sink = SmtpSink(port=smtp_port).start()  # the cause is fixed
            call_command("dead_letters", "replay", str(letter.pk), stdout=open("/dev/null", "w"))
            wait_until(lambda: sink.messages, 60, message="the replayed email arrived")
            letter.refresh_from_db()
            assert letter.status == DeadLetter.Status.REPLAYED and letter.replay_task_id
            assert len(sink.messages) == 1
    finally:
        worker.stop()
        if sink:
            sink.stop()


def test_a_tenant_task_touches_only_its_own_tenant(tenants, django_db_blocker, broker):
    worker = CeleryWorker(broker_url=broker["url"], queues="search", name="search").start()
    try:
        with django_db_blocker.unblock(), committed_tenant("tasks-a") as a, committed_tenant("tasks-b") as b:
            from apps.content.services import document_create

            with tenant_activated(a):
                doc_a = document_create(title="only in a")
            with tenant_activated(b):
                doc_b = document_create(title="only in b")
            assert doc_a.pk == doc_b.pk  # each schema has its own ids: a wrong schema would hit the other row
            with tenant_activated(a):
                wait_until(lambda: SearchEntry.objects.filter(document_id=doc_a.pk).exists(), 30, message="a indexed")
            with tenant_activated(b):
                wait_until(lambda: SearchEntry.objects.filter(document_id=doc_b.pk).exists(), 30, message="b indexed")
                SearchEntry.objects.all().delete()
            with tenant_activated(a):
                index_documents.delay([doc_a.pk])  # a's task, a's id, which b also has
                wait_until(lambda: "index_documents" in worker.log_text() and worker.log_text().count("succeeded") >= 3,
                           30, message="task ran")
            with tenant_activated(b):
                assert not SearchEntry.objects.exists(), "a's task wrote into b's schema"
    finally:
        worker.stop()


def test_broker_down_at_commit_loses_nothing(tenants, django_db_blocker, broker, settings):
    if broker["kind"] != "redis":
        # The one skip CI keeps: the machine's RabbitMQ is shared, not this test's to stop.
        pytest.skip("stopping the machine's RabbitMQ would disturb other users; the outbox is broker-agnostic")
    settings.OUTBOX_SWEEP_AFTER_SECONDS = 0
    server = broker["server"]
    with django_db_blocker.unblock(), committed_tenant("outage") as tenant:
        from apps.accounts.models import User
        from apps.accounts.tokens import issue_user_token

        owner = User.objects.get(email="owner@outage.test")
        client = Client(HTTP_HOST="outage.localhost",
                        HTTP_AUTHORIZATION=f"Bearer {issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)}")
        from apps.jobs.outbox import relay_thread

        # Provisioning's own messages (the owner's member.added event) are sent
        # while the broker is up; after one failed send the relay leaves the
        # rest to the sweep, and this test follows the document's message.
        assert relay_thread.flush(10)
        server.stop()
        response = client.post("/api/v1/documents", {"title": "written during the outage"},
                               content_type="application/json")
        assert response.status_code == 201, response.content
        doc_id = response.json()["id"]
        assert relay_thread.flush(10)  # the relay tried off the request thread
        with tenant_activated(tenant):
            pending = TenantOutboxMessage.objects.get()
            assert pending.sent_at is None and pending.attempts == 1 and pending.last_error
        server.start()
        worker = CeleryWorker(broker_url=broker["url"], queues="search,maintenance",
                              env={"OUTBOX_SWEEP_AFTER_SECONDS": "0"}, name="outage").start()
        try:
            from apps.outbox.tasks import sweep

            sweep.delay()  # what beat does every OUTBOX_SWEEP_SECONDS
            with tenant_activated(tenant):
                wait_until(lambda: SearchEntry.objects.filter(document_id=doc_id).exists(), 60,
                           message="the change reached the index after the outage")
                pending.refresh_from_db()
                assert pending.sent_at is not None
            assert connections
        finally:
            worker.stop()


def test_no_secret_reaches_the_worker_log(tenants, django_db_blocker, broker, clean_breaker):
    """An invitation email carries its token through a real worker; the
    worker's whole log (stdout and stderr, INFO) never shows it."""
    from apps.accounts.models import Invitation
    from apps.accounts.services import invitation_create

    sink = SmtpSink().start()
    worker = CeleryWorker(broker_url=broker["url"], queues="emails",
                          env={"EMAIL_PORT": str(sink.port), "LOG_FORMAT": "json"}, name="secrets").start()
    try:
        with django_db_blocker.unblock():
            email = f"invitee-{uuid.uuid4().hex[:8]}@example.com"
            created = invitation_create(tenant_id=tenants["alpha"].pk, email=email, role="member", invited_by=None)
            try:
                wait_until(lambda: sink.messages, 30, message="the invitation email arrived")
                assert created.token in sink.messages[0]["data"]  # the email does carry it
                wait_until(lambda: "succeeded" in worker.log_text(), 10, message="the task's log lines")
                worker.stop()
                log = worker.log_text()
                assert "notifications.send_email" in log and "succeeded" in log
                assert created.token not in log
                assert email not in log
            finally:
                Invitation.objects.filter(pk=created.invitation.pk).delete()
    finally:
        worker.stop()
        sink.stop()


def test_a_task_meeting_a_moving_tenant_retries_and_runs_where_the_tenant_is_now(tenants, django_db_blocker, broker):
    """A move renames the tenant's schema and points the registry elsewhere;
    its writes are frozen meanwhile. A task meeting either state is retried
    with backoff (no dead letter) and runs once the tenant is settled, on the
    placement it reads afresh from the registry."""
    from apps.content.services import document_create
    from apps.tenancy import schemas
    from apps.tenancy.models import Tenant

    slug = f"moving-{broker['kind']}"
    worker = CeleryWorker(broker_url=broker["url"], queues="search", name="moving").start()
    try:
        with django_db_blocker.unblock(), committed_tenant(slug) as tenant:
            alias, schema = tenant.shard.alias, tenant.schema_name
            with tenant_activated(tenant):
                doc = document_create(title="indexed wherever the tenant lives")
                wait_until(lambda: SearchEntry.objects.filter(document_id=doc.pk).exists(), 30, message="indexed")
                SearchEntry.objects.all().delete()

            # Mid-move: the schema is not where the registry says.
            moved = f"{schema}_moved"
            with connections[alias].cursor() as cursor:
                cursor.execute(f'ALTER SCHEMA "{schema}" RENAME TO "{moved}"')
            try:
                with tenant_activated(tenant):
                    index_documents.delay([doc.pk])
                wait_until(lambda: worker.log_text().count("TenantBusy") >= 1, 30, message="retried as busy")
                Tenant.objects.filter(pk=tenant.pk).update(schema_name=moved)  # the move's flip
                moved_tenant = Tenant.objects.select_related("shard").get(pk=tenant.pk)
                with tenant_activated(moved_tenant):
                    wait_until(lambda: SearchEntry.objects.filter(document_id=doc.pk).exists(), 60,
                               message="indexed in the tenant's new place")
                    SearchEntry.objects.all().delete()

                # Writes frozen: the task waits for the freeze to end.
                Tenant.objects.filter(pk=tenant.pk).update(writes_frozen_until="2999-01-01T00:00:00Z")  # a lease
                busy_before = worker.log_text().count("TenantBusy")
                with tenant_activated(moved_tenant):
                    index_documents.delay([doc.pk])
                    wait_until(lambda: worker.log_text().count("TenantBusy") > busy_before, 30,
                               message="retried while frozen")
                    assert not SearchEntry.objects.exists()
                    Tenant.objects.filter(pk=tenant.pk).update(writes_frozen_until=None)
                    wait_until(lambda: SearchEntry.objects.filter(document_id=doc.pk).exists(), 60,
                               message="indexed after the freeze")
                assert not DeadLetter.objects.filter(tenant_slug=slug).exists()
            finally:
                schemas.drop_schema(alias, moved)  # the tenant's data, whichever name the registry has
    finally:
        worker.stop()
