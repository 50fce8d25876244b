"""Write latency with the broker up and down (a real gunicorn, 1 worker x 8 threads).

    bin/dev bench publish [WRITES]    (default 200 document creates per case, 4 clients)

Each document create commits an outbox row (a search-index task). Cases:
Redis broker up; killed (connection refused); paused with SIGSTOP (accepts
connections, never answers); RabbitMQ up (BENCH_AMQP_URL, default the local
guest vhost); RabbitMQ URL where nothing listens. After each down case the
broker comes back and the sweep sends what was left: the count must match.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from django.conf import settings

from apps.accounts.models import User
from apps.accounts.tokens import issue_user_token
from apps.billing.models import Plan
from apps.content.models import Document
from apps.outbox.models import TenantOutboxMessage
from apps.outbox.services import tenant_outbox_sweep
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.routers import tenant_write_alias
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.benchmarks._setup import percentile
from tests.support import Gunicorn, free_port
from tests.test_publish_faults import PausedRedis
from tests.workers import celery_broker, port_answers, purge_queues

AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
CLIENTS = 4


def setup():
    public_tenant_ensure()
    shard_register_configured()
    tenant = Tenant.objects.filter(slug="bench-publish").select_related("shard").first()
    if tenant is None:
        tenant = tenant_create(slug="bench-publish", name="Bench Publish", admin_email="publish@bench.test",
                               admin_password="bench-password", plan="enterprise").tenant
    Plan.objects.filter(code="enterprise").update(rate_limit_per_minute=100_000_000)
    owner = User.objects.get(email="publish@bench.test")
    return tenant, issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)


def writes(tenant, token: str, broker_url: str, count: int) -> list[float]:
    with tenant_activated(tenant):
        Document.objects.all().delete()
        TenantOutboxMessage.objects.all().delete()
    headers = {"Host": f"{tenant.slug}.localhost", "Authorization": f"Bearer {token}"}
    with Gunicorn(workers=1, env={"CELERY_BROKER_URL": broker_url, "LOG_LEVEL": "ERROR"}) as server:
        def create(number: int) -> float:
            started = time.monotonic()
            response = requests.post(f"{server.url}/api/v1/documents", json={"title": f"bench {number}"},
                                     headers=headers, timeout=60)
            assert response.status_code == 201, response.text
            return time.monotonic() - started

        for number in range(10):  # warm up
            create(number)
        with ThreadPoolExecutor(CLIENTS) as pool:
            latencies = list(pool.map(create, range(count)))
        time.sleep(1.5)  # the relay thread finishes what it can
    return latencies


def unsent() -> int:
    """Counted on the primary: a replica may lag behind the sweep's marks."""
    return TenantOutboxMessage.objects.using(tenant_write_alias()).filter(sent_at=None).count()


def report(label: str, latencies: list[float], tenant) -> None:
    with tenant_activated(tenant):
        left = unsent()
    print(f"{label:<34} p50 {percentile(latencies, 50) * 1000:7.1f} ms   p95 {percentile(latencies, 95) * 1000:7.1f} ms"
          f"   max {max(latencies) * 1000:7.1f} ms   unsent after: {left}")


def sweep_after(tenant, url: str) -> None:
    settings.OUTBOX_SWEEP_AFTER_SECONDS = 0
    with celery_broker(url) as app, tenant_activated(tenant):
        purge_queues(app)
        sent = tenant_outbox_sweep()
        left = unsent()
        purge_queues(app)
    print(f"{'':<34} broker back, sweep sent {sent}, unsent left {left}")


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    tenant, token = setup()
    print(f"{count} document creates per case from {CLIENTS} clients; gunicorn 1 worker x 8 threads")
    redis = PausedRedis().start()
    try:
        report("redis up", writes(tenant, token, redis.url, count), tenant)
        with celery_broker(redis.url) as app:
            purge_queues(app)
        redis.stop()
        report("redis down (connection refused)", writes(tenant, token, redis.url, count), tenant)
        sweep_after(tenant, redis.start().url)
        redis.pause()
        report("redis paused (SIGSTOP, silent)", writes(tenant, token, redis.url, count), tenant)
        redis.resume()
        sweep_after(tenant, redis.url)
    finally:
        redis.stop()  # SIGKILL, paused or not
    if not port_answers(5672):
        print("no RabbitMQ on 127.0.0.1:5672: amqp cases skipped")
        return
    report("rabbitmq up", writes(tenant, token, AMQP_URL, count), tenant)
    with celery_broker(AMQP_URL) as app:
        purge_queues(app)
    dead = AMQP_URL.split("@", 1)[0] + f"@127.0.0.1:{free_port()}/" + AMQP_URL.rsplit("/", 1)[1]
    report("rabbitmq down (connection refused)", writes(tenant, token, dead, count), tenant)
    sweep_after(tenant, AMQP_URL)


if __name__ == "__main__":
    main()
