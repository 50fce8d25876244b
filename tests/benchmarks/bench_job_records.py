"""What job records cost an enqueue, next to a bare kombu publish.

    bin/dev bench job_records [COUNT]    (default 3000 messages per case and round, 3 rounds)

The same measurement as ``bin/dev bench enqueue`` (a tenant task's
``apply_async`` and a bare ``kombu.Producer.publish`` of a body of the same
size, alternating message by message through one held connection), twice:
with job records off, and on (JOB_RECORDS_ENABLED). With records on, every
publish appends an event to the process's buffer and the flusher thread of
this same process redacts, encodes and writes them to the control database
every JOB_RECORD_FLUSH_SECONDS while the publishes go on: what the records
cost the publishing process is all in the "on" figures. Afterwards it counts
the rows written. Goal: apply_async p50 within 1.5x of the bare publish, with
records on.
"""

from __future__ import annotations

import sys
import time

from django.conf import settings

from apps.jobs import records
from apps.jobs.models import Job
from tests.benchmarks.bench_enqueue import AMQP_URL, REDIS_BROKER, bench_tenant, measure
from tests.workers import port_answers


def case(url: str, tenant, count: int, rounds: int, *, enabled: bool) -> dict:
    settings.JOB_RECORDS_ENABLED = enabled
    records.flush()
    before = Job.objects.count()
    started = time.monotonic()
    figures = measure(url, tenant, count, rounds)
    records.flush()  # what the thread had not written yet
    figures["rows"] = Job.objects.count() - before
    figures["seconds"] = time.monotonic() - started
    return figures


def ratio(count: int = 3000, rounds: int = 3) -> dict:
    tenant = bench_tenant()
    brokers = {"redis": REDIS_BROKER, **({"rabbitmq": AMQP_URL} if port_answers(5672) else {})}
    result = {"goal": 1.5}
    for name, url in brokers.items():
        result[name] = {"off": case(url, tenant, count, rounds, enabled=False),
                        "on": case(url, tenant, count, rounds, enabled=True)}
    settings.JOB_RECORDS_ENABLED = True
    return result


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 3000
    print(f"{count} messages per case and round, 3 rounds, one process; medians over rounds")
    figures = ratio(count)
    for broker in ("redis", "rabbitmq"):
        if broker not in figures:
            print(f"{broker:<9} no broker on 127.0.0.1:5672: skipped")
            continue
        for label in ("off", "on"):
            f = figures[broker][label]
            print(f"{broker:<9} records {label:<3}  bare p50 {f['bare_p50_ms']:6.3f} ms p99 {f['bare_p99_ms']:6.3f} ms"
                  f"   apply_async p50 {f['apply_async_p50_ms']:6.3f} ms p99 {f['apply_async_p99_ms']:6.3f} ms"
                  f"   ratio p50 {f['ratio_p50']:.2f} p99 {f['ratio_p99']:.2f}   rows written {f['rows']}")
    print(f"goal: ratio p50 <= {figures['goal']} with records on")


if __name__ == "__main__":
    main()
