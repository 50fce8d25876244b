"""The cost of enqueueing a tenant task next to a bare kombu publish.

    bin/dev bench enqueue [COUNT] [--profile [--amqp]]    (default 3000 messages per case and round, 3 rounds)

Per broker (Redis in its own database; RabbitMQ on BENCH_AMQP_URL when one
answers on 5672): p50/p99 of ``apply_async`` of a tenant task
(``search.index_documents`` with a tenant active: tenant, request-id and
user headers, redacted argument reprs, the sent_at stamp) against
``kombu.Producer.publish`` of a body of the same size to the same queue
through one held connection, which is all a publish needs (persistent,
with publisher confirms on RabbitMQ, as the platform publishes). The two
alternate message by message; figures are medians over the rounds. Goal:
apply_async p50 within 1.5x of the bare publish.

``ratio()`` returns the figures as a dict; ``--profile`` prints where
apply_async spends its time.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import statistics
import sys
import time
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from kombu import Connection, Exchange, Queue

from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.benchmarks._setup import percentile
from tests.workers import celery_broker, port_answers, purge_queues

REDIS_BROKER = urlunsplit(urlsplit(settings.REDIS_URL)._replace(path="/13"))
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
SLUG = "bench-enqueue"


def bench_tenant() -> Tenant:
    public_tenant_ensure()
    shard_register_configured()
    tenant = Tenant.objects.filter(slug=SLUG).select_related("shard").first()
    if tenant is None:
        tenant = tenant_create(slug=SLUG, name="Bench Enqueue", admin_email=f"owner@{SLUG}.test",
                               admin_password="bench-password").tenant
    return tenant


def interleaved(url: str, tenant: Tenant, count: int) -> tuple[list[float], list[float]]:
    """One bare publish, then one apply_async, ``count`` times: both see the
    same moment of a shared machine."""
    from apps.search.tasks import index_documents

    arguments = {"x-queue-type": "quorum"} if url.startswith("amqp") else None  # as the platform declares it
    queue = Queue("search", Exchange("search", type="direct"), routing_key="search", queue_arguments=arguments)
    # The same delivery guarantee as the platform's producer: persistent
    # messages, with publisher confirms on RabbitMQ.
    options = {"confirm_publish": True} if url.startswith("amqp") else {}
    body = [[[1, 2, 3]], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    bare, celery = [], []
    with Connection(url, transport_options=options) as connection, tenant_activated(tenant):
        producer = connection.Producer()

        def publish():
            producer.publish(body, exchange=queue.exchange, routing_key="search", declare=[queue],
                             serializer="json", delivery_mode=2)

        publish()
        index_documents.apply_async(args=[[1, 2, 3]])  # connect, declare
        clock = time.perf_counter
        for _ in range(count):
            started = clock()
            publish()
            middle = clock()
            index_documents.apply_async(args=[[1, 2, 3]])
            bare.append(middle - started)
            celery.append(clock() - middle)
    return bare, celery


def profile(tenant: Tenant, count: int) -> None:
    from apps.search.tasks import index_documents

    with tenant_activated(tenant):
        index_documents.apply_async(args=[[1, 2, 3]])
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            index_documents.apply_async(args=[[1, 2, 3]])
        profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def measure(url: str, tenant: Tenant, count: int, rounds: int) -> dict:
    bare, celery = [], []
    with celery_broker(url) as app:
        purge_queues(app)
        for _ in range(rounds):
            one_bare, one_celery = interleaved(url, tenant, count)
            bare.append(one_bare)
            celery.append(one_celery)
            purge_queues(app)
    figures = {}
    for name, runs in (("bare", bare), ("apply_async", celery)):
        figures[f"{name}_p50_ms"] = statistics.median(percentile(run, 50) for run in runs) * 1000
        figures[f"{name}_p99_ms"] = statistics.median(percentile(run, 99) for run in runs) * 1000
    figures["ratio_p50"] = figures["apply_async_p50_ms"] / figures["bare_p50_ms"]
    figures["ratio_p99"] = figures["apply_async_p99_ms"] / figures["bare_p99_ms"]
    return figures


def ratio(count: int = 3000, rounds: int = 3) -> dict:
    """{"redis": {...}, "rabbitmq": {...} (when one answers), "goal": 1.5}."""
    tenant = bench_tenant()
    result = {"redis": measure(REDIS_BROKER, tenant, count, rounds), "goal": 1.5}
    if port_answers(5672):
        result["rabbitmq"] = measure(AMQP_URL, tenant, count, rounds)
    return result


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 3000
    if "--profile" in sys.argv:
        with celery_broker(AMQP_URL if "--amqp" in sys.argv else REDIS_BROKER) as app:
            profile(bench_tenant(), count)
            purge_queues(app)
        return
    print(f"{count} messages per case and round, 3 rounds, one process; medians over rounds")
    figures = ratio(count)
    for broker in ("redis", "rabbitmq"):
        if broker not in figures:
            print(f"{broker:<9} no broker on 127.0.0.1:5672: skipped")
            continue
        f = figures[broker]
        print(f"{broker:<9} bare kombu publish  p50 {f['bare_p50_ms']:6.3f} ms  p99 {f['bare_p99_ms']:6.3f} ms")
        print(f"{'':<9} apply_async (tenant) p50 {f['apply_async_p50_ms']:6.3f} ms  p99 {f['apply_async_p99_ms']:6.3f} ms"
              f"   ratio p50 {f['ratio_p50']:.2f}  p99 {f['ratio_p99']:.2f}  (goal p50 <= {figures['goal']})")


if __name__ == "__main__":
    main()
