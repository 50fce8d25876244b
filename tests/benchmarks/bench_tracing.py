"""What tracing costs: nothing measurable when off; how much when on.

    bin/dev bench tracing [REQUESTS]    (default 1500 requests per case and round, 3 rounds)

In this process, through Django's request handler (no network, so the
figures are the platform's own work): an unauthenticated
GET /api/v1/documents on a tenant host, answered 401 with a problem body and
a django.request warning line, i.e. it passes every tracing hook of the
request path (the log filter, the problem renderer). Cases, alternated in
each round, figures the medians over the rounds:

* off: tracing not configured (nothing installed);
* on: installed, every span sampled, spans batched to an exporter that drops them;

and, per log record, the context filter with tracing off against the same
filter without the trace fields (the yardstick: what it was before tracing).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time

from django.db import connections
from django.test import Client
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from apps.observability import tracing
from apps.observability.context import request_id_var, tenant_var, user_var
from apps.observability.logging import ContextFilter
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.benchmarks._setup import percentile

SLUG = "bench-tracing"
ROUNDS = 3


class DroppingExporter(SpanExporter):
    def export(self, spans) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class FilterBeforeTracing(logging.Filter):
    """The context filter as it was without tracing: the yardstick."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        record.tenant = tenant_var.get() or "-"
        record.user = user_var.get() or "-"
        return True


def bench_host() -> str:
    public_tenant_ensure()
    shard_register_configured()
    tenant = Tenant.objects.filter(slug=SLUG).first()
    if tenant is None:
        tenant = tenant_create(slug=SLUG, name="Bench Tracing", admin_email=f"owner@{SLUG}.test",
                               admin_password="bench-password").tenant
    return tenant.domains.get(is_primary=True).domain


def requests_timed(host: str, count: int) -> list[float]:
    client = Client(HTTP_HOST=host)
    client.get("/api/v1/documents")  # warm: middleware loaded, tenant cached
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get("/api/v1/documents")
        timings.append(time.perf_counter() - started)
    assert response.status_code == 401, response.content
    return timings


def filter_ns(log_filter: logging.Filter, count: int = 200_000) -> float:
    record = logging.LogRecord("bench", logging.INFO, __file__, 1, "message", None, None)
    started = time.perf_counter()
    for _ in range(count):
        log_filter.filter(record)
    return (time.perf_counter() - started) / count * 1e9


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    # The 401 warnings are formatted (the filter runs) but not printed.
    for handler in logging.getLogger("django").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (for the whole run)
    host = bench_host()
    rounds: dict[str, list[float]] = {"off p50": [], "off p99": [], "on p50": [], "on p99": [],
                                      "filter off": [], "filter yardstick": []}
    for number in range(1, ROUNDS + 1):
        connections.close_all()
        off = requests_timed(host, count)
        connections.close_all()  # the next connections are traced
        tracing.install([BatchSpanProcessor(DroppingExporter())], service_name="bench")
        try:
            on = requests_timed(host, count)
        finally:
            tracing.uninstall()
        rounds["off p50"].append(percentile(off, 50))
        rounds["off p99"].append(percentile(off, 99))
        rounds["on p50"].append(percentile(on, 50))
        rounds["on p99"].append(percentile(on, 99))
        rounds["filter off"].append(filter_ns(ContextFilter()))
        rounds["filter yardstick"].append(filter_ns(FilterBeforeTracing()))
        print(f"round {number}: request p50 off {percentile(off, 50) * 1e6:.0f} us, "
              f"on {percentile(on, 50) * 1e6:.0f} us", flush=True)
    median = {name: statistics.median(values) for name, values in rounds.items()}
    print(f"\n{count} requests per case and round, {ROUNDS} rounds, medians (one process, no network):")
    print(f"  request, tracing off:  p50 {median['off p50'] * 1e6:7.0f} us   p99 {median['off p99'] * 1e6:7.0f} us")
    print(f"  request, tracing on:   p50 {median['on p50'] * 1e6:7.0f} us   p99 {median['on p99'] * 1e6:7.0f} us"
          f"   (on/off p50 {median['on p50'] / median['off p50']:.2f}x)")
    extra = median["filter off"] - median["filter yardstick"]
    print(f"  log filter per record: {median['filter off']:.0f} ns off vs {median['filter yardstick']:.0f} ns "
          f"without trace fields: {extra:+.0f} ns, {extra / (median['off p50'] * 1e9) * 100:+.3f}% of a request")


if __name__ == "__main__":
    main()
