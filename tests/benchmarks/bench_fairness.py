"""Another tenant's wait behind one tenant's flood, with and without the per-tenant limit.

    bin/dev bench fairness [FLOOD] [SECONDS]    (default 5000 tasks of 0.02 s each)

One worker (prefork, concurrency 2) on a private Redis broker serves the
``default`` queue. Tenant A enqueues FLOOD tasks, then tenant B one; the
figure is B's start latency (start - enqueue). Cases: no flood; flood with
A's plan unlimited (task_concurrency 0: plain FIFO); flood with A's plan
limited to 1 (apps/jobs/fairness.py). B waits at most 300 s per case.

``ratio()`` returns the latencies (seconds) as a dict.
"""

from __future__ import annotations

import sys
import time
import uuid

from apps.billing.models import Plan
from apps.caching.connections import redis_client
from apps.jobs import fairness
from apps.jobs.tasks import tenant_probe
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.workers import CeleryWorker, RedisBroker, celery_broker, purge_queues

WAIT_LIMIT = 300.0


def bench_tenants() -> tuple[Tenant, Tenant, Plan]:
    public_tenant_ensure()
    shard_register_configured()
    template = Plan.objects.get(code="free")
    plan, _ = Plan.objects.get_or_create(code="bench-fair-a", defaults=dict(
        name="Bench fairness A", rank=990, max_documents=template.max_documents,
        max_events_per_month=template.max_events_per_month, max_seats=template.max_seats,
        max_api_keys=template.max_api_keys, rate_limit_per_minute=template.rate_limit_per_minute))
    made = []
    for slug in ("bench-fair-a", "bench-fair-b"):
        tenant = Tenant.objects.filter(slug=slug).select_related("shard").first()
        if tenant is None:
            tenant = tenant_create(slug=slug, name=slug, admin_email=f"owner@{slug}.test",
                                   admin_password="bench-password").tenant
        made.append(tenant)
    Tenant.objects.filter(pk=made[0].pk).update(plan=plan)
    return made[0], made[1], plan


def clear_state() -> None:
    client = redis_client()
    for key in client.scan_iter(f"{fairness._prefix()}:*"):
        client.delete(key)
    fairness._limits.clear()


def one_case(broker_url: str, a: Tenant, b: Tenant, plan: Plan, *, flood: int, limit: int, seconds: float) -> float:
    Plan.objects.filter(pk=plan.pk).update(task_concurrency=limit)
    clear_state()
    key = f"bench-fair-{uuid.uuid4().hex}"
    client = redis_client()
    worker = CeleryWorker(broker_url=broker_url, queues="default", name="fair", concurrency=2,
                          env={"DJANGO_SETTINGS_MODULE": "config.settings.local", "LOG_LEVEL": "WARNING"})
    with celery_broker(broker_url) as app:
        purge_queues(app)
        worker.start()
        try:
            with tenant_activated(a):
                for _ in range(flood):
                    tenant_probe.apply_async(args=[key, "a", time.time(), seconds], queue="default")
            with tenant_activated(b):
                tenant_probe.apply_async(args=[key, "b", time.time(), 0.0], queue="default")
            deadline = time.monotonic() + WAIT_LIMIT
            while time.monotonic() < deadline:
                for raw in client.lrange(key, 0, -1):
                    label, _, waited, _ = raw.decode().split()
                    if label == "b":
                        return float(waited)
                time.sleep(0.05)
            return float("inf")
        finally:
            worker.kill()
            purge_queues(app)
            client.delete(key)
            clear_state()


def ratio(flood: int = 5000, seconds: float = 0.02) -> dict:
    """Tenant B's start latency (s) per case."""
    a, b, plan = bench_tenants()
    broker = RedisBroker().start()
    try:
        figures = {
            "idle_s": one_case(broker.url, a, b, plan, flood=0, limit=1, seconds=seconds),
            "flood_no_limit_s": one_case(broker.url, a, b, plan, flood=flood, limit=0, seconds=seconds),
            "flood_limit_1_s": one_case(broker.url, a, b, plan, flood=flood, limit=1, seconds=seconds),
        }
    finally:
        broker.stop()
    figures.update(flood=flood, task_seconds=seconds)
    return figures


def main() -> None:
    flood = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
    print(f"tenant A floods {flood} tasks of {seconds} s; one worker, concurrency 2; tenant B then enqueues one")
    figures = ratio(flood, seconds)

    def shown(value: float) -> str:
        return f"> {WAIT_LIMIT:.0f} s" if value == float("inf") else f"{value:7.2f} s"

    print(f"B's start latency, no flood:                  {shown(figures['idle_s'])}")
    print(f"B's start latency, flood, A unlimited (FIFO): {shown(figures['flood_no_limit_s'])}")
    print(f"B's start latency, flood, A limited to 1:     {shown(figures['flood_limit_1_s'])}")


if __name__ == "__main__":
    main()
