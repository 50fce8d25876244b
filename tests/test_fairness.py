"""Fairness between tenants within a queue, with real workers on a real broker.

A tenant over its plan's task concurrency has its messages parked (not run,
not spun through the queue) until one of its running tasks ends, so another
tenant's task does not wait behind its flood. Orders of events are asserted,
not durations: the figures come from tests/benchmarks/bench_fairness.py.
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager

import pytest

from apps.billing.models import Plan
from apps.caching.connections import redis_client
from apps.jobs import fairness
from apps.jobs.tasks import tenant_probe
from apps.tenancy.models import Tenant
from tests.workers import CeleryWorker, live_broker, wait_until

pytestmark = pytest.mark.live


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request):
    with live_broker(request.param) as broker:
        yield broker


@pytest.fixture
def redis_broker():
    with live_broker("redis") as broker:
        yield broker


def clear_fairness_state() -> None:
    client = redis_client()
    for key in client.scan_iter(f"{fairness._prefix()}:*"):
        client.delete(key)
    fairness._limits.clear()


@contextmanager
def plan_limits(django_db_blocker, tenants, **limits: int):
    """Committed plans with these task limits for the named session tenants
    (the workers read them), put back after."""
    with django_db_blocker.unblock():
        template = Plan.objects.get(code="free")
        saved = {}
        made = []
        for index, (slug, limit) in enumerate(limits.items()):
            plan = Plan.objects.create(
                code=f"fair-{slug}-{uuid.uuid4().hex[:6]}", name=f"Fair {slug}", rank=900 + index,
                max_documents=template.max_documents, max_events_per_month=template.max_events_per_month,
                max_seats=template.max_seats, max_api_keys=template.max_api_keys,
                rate_limit_per_minute=template.rate_limit_per_minute, task_concurrency=limit)
            made.append(plan)
            saved[slug] = Tenant.objects.get(pk=tenants[slug].pk).plan_id
            Tenant.objects.filter(pk=tenants[slug].pk).update(plan=plan)
        clear_fairness_state()
        try:
            yield
        finally:
            for slug, plan_id in saved.items():
                Tenant.objects.filter(pk=tenants[slug].pk).update(plan_id=plan_id)
            Plan.objects.filter(pk__in=[p.pk for p in made]).delete()
            clear_fairness_state()


def enqueue(tenant, key: str, label: str, count: int, seconds: float) -> None:
    from apps.tenancy.activation import tenant_activated

    with tenant_activated(tenant):
        for _ in range(count):
            tenant_probe.apply_async(args=[key, label, time.time(), seconds], queue="default")


def records(key: str) -> list[tuple[str, int, float, float]]:
    """(label, tenant id, start - sent, start) per started task, in start order."""
    out = []
    for raw in redis_client().lrange(key, 0, -1):
        label, tenant_id, waited, started = raw.decode().split()
        out.append((label, int(tenant_id), float(waited), float(started)))
    return out


def most_at_once(starts: list[float], seconds: float) -> int:
    """The most tasks of ``seconds`` each running at one moment."""
    events = sorted([(s, 1) for s in starts] + [(s + seconds, -1) for s in starts])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@contextmanager
def flood_then_other(tenants, django_db_blocker, broker_url: str, *, flood: int, seconds: float):
    """A worker (concurrency 2); alpha enqueues ``flood`` tasks, then gamma
    one; yields the start records once gamma's task has started."""
    key = f"fair-{uuid.uuid4().hex}"
    worker = CeleryWorker(broker_url=broker_url, queues="default", name="fair", concurrency=2).start()
    try:
        with django_db_blocker.unblock():
            enqueue(tenants["alpha"], key, "flood", flood, seconds)
            enqueue(tenants["gamma"], key, "other", 1, 0.0)
        wait_until(lambda: any(r[0] == "other" for r in records(key)), 60, message="the other tenant's task ran")
        yield records(key)
    finally:
        worker.stop()


def test_a_flooding_tenant_does_not_hold_back_another(tenants, django_db_blocker, broker):
    with plan_limits(django_db_blocker, tenants, alpha=1, gamma=1), \
            flood_then_other(tenants, django_db_blocker, broker["url"], flood=300, seconds=0.2) as started:
        flood_before = sum(1 for r in started if r[0] == "flood")
        # FIFO would have run all 300 first; here only what alpha's one
        # slot got through while the worker set the rest of its flood aside.
        assert flood_before < 100, flood_before
        assert fairness.parked_count("default", tenants["alpha"].pk) > 150
        assert most_at_once([r[3] for r in started if r[0] == "flood"], 0.19) == 1
        assert fairness.in_flight("default", tenants["alpha"].pk) <= 1


def test_without_a_limit_the_flood_runs_first(tenants, django_db_blocker, redis_broker):
    """The failure the limit prevents: a plan with no limit (0) is FIFO."""
    with plan_limits(django_db_blocker, tenants, alpha=0, gamma=0), \
            flood_then_other(tenants, django_db_blocker, redis_broker["url"], flood=30, seconds=0.05) as started:
        assert sum(1 for r in started if r[0] == "flood") >= 29


def test_each_tenant_runs_up_to_its_plans_limit_and_parked_tasks_all_run(tenants, django_db_blocker,
                                                                           redis_broker):
    key = f"fair-plan-{uuid.uuid4().hex}"
    with plan_limits(django_db_blocker, tenants, alpha=3, gamma=1):
        worker = CeleryWorker(broker_url=redis_broker["url"], queues="default", name="plan", concurrency=4).start()
        try:
            with django_db_blocker.unblock():
                enqueue(tenants["alpha"], key, "three", 9, 0.6)
                enqueue(tenants["gamma"], key, "one", 4, 0.6)
            wait_until(lambda: len(records(key)) == 13, 90, message="every task ran, parked ones included")
            started = records(key)
            assert most_at_once([r[3] for r in started if r[0] == "three"], 0.6) == 3
            assert most_at_once([r[3] for r in started if r[0] == "one"], 0.6) == 1
            assert {r[1] for r in started if r[0] == "three"} == {tenants["alpha"].pk}
        finally:
            worker.stop()
        assert fairness.parked_count("default", tenants["alpha"].pk) == 0


def test_a_killed_workers_slot_lapses_with_its_lease(tenants, django_db_blocker, redis_broker):
    key = f"fair-kill-{uuid.uuid4().hex}"
    lease = {"TASK_FAIRNESS_LEASE_SECONDS": "2"}
    with plan_limits(django_db_blocker, tenants, alpha=1):
        first = CeleryWorker(broker_url=redis_broker["url"], queues="default", name="doomed", env=lease).start()
        with django_db_blocker.unblock():
            enqueue(tenants["alpha"], key, "long", 1, 60)
            wait_until(lambda: records(key), 30, message="the long task started")
            time.sleep(2.5)  # longer than a lease: only renewals keep the slot
            assert fairness.in_flight("default", tenants["alpha"].pk) == 1
            first.kill()
            # The broker's redelivery of the killed task is another test's
            # subject (tests/test_worker_loss.py): forget it here, so only the
            # slot it held stands between the next task and a worker.
            broker_client = redis_client(redis_broker["url"])
            broker_client.delete("unacked", "unacked_index")
            enqueue(tenants["alpha"], key, "next", 1, 0)
            second = CeleryWorker(broker_url=redis_broker["url"], queues="default", name="next", env=lease).start()
            try:
                # A slot counted but never freed would keep "next" parked for
                # ever; the lease lapses 2 s after the dead worker's last
                # renewal, and beat's sweep (run here) wakes what it parked.
                wait_until(lambda: fairness.sweep() >= 0 and any(r[0] == "next" for r in records(key)), 30,
                           interval=0.5, message="the next task ran")
                assert fairness.in_flight("default", tenants["alpha"].pk) == 0
            finally:
                second.stop()
