"""Webhooks through real processes: a Celery worker on the webhooks queue
(private redis-server broker), committed tenants, and a receiver process
that verifies every delivery with the Standard Webhooks library.

Time is moved, not waited for: ``travel`` moves a tenant's webhook rows
into the past (due times, first attempts, the endpoint's failure clock) as
if that much time had gone by, and the sweep then wakes the tenant, as beat
would. The breaker's reset is a second of real time (worker setting).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import pytest
import requests
from django.db import connections

from tests.support import ROOT, committed_tenant, free_port
from tests.workers import CeleryWorker, RedisBroker, celery_broker, wait_until

pytestmark = pytest.mark.live

WORKER_ENV = {"WEBHOOKS_TIMEOUT_SECONDS": "1", "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "0.5",
              "WEBHOOKS_CLAIM_SECONDS": "3", "WEBHOOKS_BREAKER_RESET_SECONDS": "1", "WEBHOOKS_RUN_SECONDS": "0.5",
              "BREAKER_NAMESPACE": f"hooks-live-{os.getpid()}", "LOG_LEVEL": "WARNING"}


class ReceiverProcess:
    """tests/webhook_receiver.py in a process of its own, on one port across restarts."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.earlier: list[dict] = []  # what it accepted before a restart

    def start(self, **control) -> ReceiverProcess:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.webhook_receiver", str(self.port)], cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout.readline().strip() == "ready"
        if control:
            self.control(**control)
        return self

    def control(self, **settings) -> None:
        requests.post(f"{self.url}/_control", json=settings, timeout=5).raise_for_status()

    def received(self) -> dict:
        return requests.get(f"{self.url}/_received", timeout=5).json()

    def accepted(self) -> list[dict]:
        now = self.received()["accepted"] if self.process and self.process.poll() is None else []
        return self.earlier + now

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.earlier += self.received()["accepted"]
            self.process.kill()
            self.process.wait(10)


@dataclass
class Stack:
    a: object
    b: object
    worker: CeleryWorker
    broker_url: str


@pytest.fixture(scope="module")
def stack(tenants, django_db_blocker):
    broker = RedisBroker().start()
    with django_db_blocker.unblock(), committed_tenant("hooka") as a, committed_tenant("hookb") as b, \
            celery_broker(broker.url):
        worker = CeleryWorker(broker_url=broker.url, queues="webhooks", name="hooks", concurrency=2,
                              env=WORKER_ENV).start()
        try:
            yield Stack(a, b, worker, broker.url)
        finally:
            worker.stop()
            broker.stop()


@pytest.fixture
def unblocked(django_db_blocker):
    with django_db_blocker.unblock():
        yield


# --- helpers ---------------------------------------------------------------------------


def endpoint_for(tenant, receiver: ReceiverProcess, path: str = "/hooks"):
    from apps.tenancy.activation import tenant_activated
    from apps.webhooks.services import endpoint_create

    with tenant_activated(tenant):
        made = endpoint_create(url=f"{receiver.url}{path}", event_types=["*"])
    return made


def drop_endpoints(tenant) -> None:
    from apps.tenancy.activation import tenant_activated
    from apps.webhooks.models import Endpoint
    from apps.webhooks.services import endpoint_delete

    with tenant_activated(tenant):
        for endpoint in Endpoint.objects.all():
            endpoint_delete(endpoint=endpoint)


def travel(tenant, seconds: float) -> None:
    """As if ``seconds`` had passed for the tenant's webhooks (claims are left
    alone: a live run's claim must not lapse under it)."""
    from apps.tenancy.activation import tenant_activated
    from apps.tenancy.routers import tenant_write_alias

    step = dt.timedelta(seconds=seconds)
    with tenant_activated(tenant), connections[tenant_write_alias(tenant)].cursor() as cursor:
        cursor.execute("UPDATE webhooks_delivery SET next_attempt_at = next_attempt_at - %s, "
                       "first_attempt_at = first_attempt_at - %s, created_at = created_at - %s", [step] * 3)
        cursor.execute("UPDATE webhooks_endpoint SET failing_since = failing_since - %s", [step])
        cursor.execute("UPDATE webhooks_event SET created_at = created_at - %s", [step])


def states(tenant) -> dict[str, int]:
    from django.db.models import Count

    from apps.tenancy.activation import tenant_activated
    from apps.webhooks.models import Delivery

    with tenant_activated(tenant):
        return dict(Delivery.objects.values_list("state").annotate(n=Count("id")).order_by())


def settle(tenant, timeout: float = 30.0) -> None:
    """Wake the tenant (as the sweep does), then wait until nothing is due or in flight."""
    from django.utils import timezone

    from apps.tenancy.activation import tenant_activated
    from apps.tenancy.routers import tenant_write_alias
    from apps.webhooks.delivery import due_now
    from apps.webhooks.models import Delivery
    from apps.webhooks.services import wake_if_due

    def quiet() -> bool:
        with tenant_activated(tenant):
            live_claims = Delivery.objects.filter(state="pending", claimed_until__gt=timezone.now()).exists()
            return not wake_if_due() and not due_now(tenant_write_alias(tenant)) and not live_claims

    time.sleep(0.2)
    wait_until(quiet, timeout, interval=0.2, message="the tenant's deliveries settled")


def write_documents(tenant, count: int, updates: int = 0) -> list[int]:
    from apps.content.services import document_create, document_update
    from apps.tenancy.activation import tenant_activated

    ids = []
    with tenant_activated(tenant):
        for n in range(count):
            document = document_create(title=f"doc {n}")
            for version in range(1, updates + 1):
                document = document_update(document_id=document.pk, expected_version=version,
                                           changes={"title": f"doc {n} v{version + 1}"})
            ids.append(document.pk)
    return ids


def event_ids(tenant) -> set[str]:
    from apps.tenancy.activation import tenant_activated
    from apps.webhooks.models import Event

    with tenant_activated(tenant):
        return {event.public_id for event in Event.objects.all()}


def assert_in_order_and_once(accepted: list[dict]) -> None:
    ids = [a["id"] for a in accepted]
    assert len(ids) == len(set(ids)), "a webhook-id was accepted twice"
    by_object = defaultdict(list)
    for got in accepted:
        by_object[got["body"]["object"]["id"]].append(got["body"]["object"]["sequence"])
    assert all(seq == sorted(seq) for seq in by_object.values()), by_object


# --- faults, then a day without the receiver ------------------------------------------------


def test_after_errors_timeouts_closed_connections_and_a_day_down_every_event_arrives_once_in_order(
        stack, unblocked):
    from apps.tenancy.activation import tenant_activated
    from apps.webhooks.models import Attempt, Endpoint

    receiver = ReceiverProcess().start(script=["error", "hang", "close"], hang_seconds=2)
    try:
        secret = endpoint_for(stack.a, receiver).secret
        receiver.control(secret=secret)
        write_documents(stack.a, 3, updates=2)  # 9 events, 3 of each object
        for _ in range(6):
            travel(stack.a, 120)
            settle(stack.a)
        assert states(stack.a) == {"delivered": 9}
        receiver.stop()  # down for a day
        write_documents(stack.a, 2, updates=1)
        for _ in range(12):
            travel(stack.a, 2 * 3600)
            settle(stack.a)
        assert states(stack.a) == {"delivered": 9, "pending": 2, "waiting": 2}
        with tenant_activated(stack.a):
            endpoint = Endpoint.objects.get()
            assert endpoint.enabled and endpoint.failing_since is not None  # a day is not three
        receiver.start(secret=secret)  # back, on the same port
        for _ in range(8):
            travel(stack.a, 6 * 3600)
            settle(stack.a)
            if states(stack.a) == {"delivered": 13}:
                break
        assert states(stack.a) == {"delivered": 13}
        accepted = receiver.accepted()
        assert {a["id"] for a in accepted} == event_ids(stack.a)
        assert_in_order_and_once(accepted)
        assert receiver.received()["bad_signatures"] == 0
        with tenant_activated(stack.a):
            errors = set(Attempt.objects.values_list("error", flat=True))
            assert Endpoint.objects.get().failing_since is None
        assert {"answered 500", "timed out", "the connection closed without a complete answer",
                "connection refused"} <= errors
    finally:
        receiver.stop()
        drop_endpoints(stack.a)



# --- a worker killed mid-attempt ------------------------------------------------------------


def test_a_delivery_worker_sigkilled_mid_attempt_loses_nothing(stack, unblocked):
    receiver = ReceiverProcess().start(script=["slow"], slow_seconds=2)
    standby = None
    try:
        receiver.control(secret=endpoint_for(stack.b, receiver).secret)
        write_documents(stack.b, 1)
        wait_until(lambda: receiver.received()["requests"] >= 1, 30, message="the attempt under way")
        stack.worker.kill()  # mid-attempt: the receiver holds the request
        standby = CeleryWorker(broker_url=stack.broker_url, queues="webhooks", name="standby",
                               env=WORKER_ENV).start()
        # The killed run's claim lapses (WEBHOOKS_CLAIM_SECONDS, 3 s); its message
        # comes back, or the sweep wakes the tenant: the delivery is sent again.
        settle(stack.b, timeout=60)
        assert states(stack.b) == {"delivered": 1}
        ids = {a["id"] for a in receiver.accepted()}
        assert ids == event_ids(stack.b)  # at least once; the webhook-id lets the receiver drop a repeat
    finally:
        receiver.stop()
        drop_endpoints(stack.b)
        stack.worker = standby or stack.worker.start()


# --- one tenant's flood, another tenant's latency ---------------------------------------------


def test_a_flood_from_one_tenant_leaves_anothers_p95_delivery_latency_under_5_seconds(stack, unblocked):
    from apps.billing.models import Plan
    from apps.content.services import DocumentInput, document_bulk_create
    from apps.tenancy.activation import tenant_activated
    from apps.tenancy.models import Tenant
    from tests.benchmarks._setup import percentile

    receiver = ReceiverProcess().start()
    flood = 4000
    free, pro = Plan.objects.get(code="free"), Plan.objects.get(code="pro")  # pro holds the flood's documents
    Tenant.objects.filter(pk=stack.a.pk).update(plan=pro)
    stack.a.plan = pro
    try:
        secret_a = endpoint_for(stack.a, receiver, "/a").secret
        secret_b = endpoint_for(stack.b, receiver, "/b").secret
        receiver.control(secrets=[secret_a, secret_b])
        with tenant_activated(stack.a):
            for _ in range(flood // 500):
                document_bulk_create(documents=[DocumentInput(title="flood")] * 500)
        for _ in range(12):
            write_documents(stack.b, 1)
            time.sleep(0.1)
        wait_until(lambda: states(stack.b).get("delivered") == 12, 60, message="tenant b's deliveries")
        accepted = receiver.accepted()
        b = [a for a in accepted if a["path"] == "/b"]
        waited = [a["at"] - dt.datetime.fromisoformat(a["body"]["timestamp"].replace("Z", "+00:00")).timestamp()
                  for a in b]
        a_done = sum(1 for a in accepted if a["path"] == "/a")
        print(f"\ntenant b's delivery latency under a flood of {flood}: p50 {percentile(waited, 50):.2f} s, "
              f"p95 {percentile(waited, 95):.2f} s, max {max(waited):.2f} s; "
              f"tenant a had {a_done} of {flood} delivered when b's last arrived")
        assert a_done < flood, "the flood was over before b's events: nothing was measured"
        assert percentile(waited, 95) < 5.0
    finally:
        receiver.stop()
        drop_endpoints(stack.a)
        drop_endpoints(stack.b)
        Tenant.objects.filter(pk=stack.a.pk).update(plan=free)
        stack.a.plan = free
