"""Webhook delivery throughput against a bare HTTP client, and what recording
events adds to a document write.

    bin/dev bench webhooks [DELIVERIES] [WRITES]    (default 2000 deliveries, 600 writes per case)

1. Deliveries per second to a receiver process on loopback (tests/webhook_receiver.py,
   which verifies every signature): the platform's delivery run (fan-out, claim,
   body, signatures, send, record, one tenant, in process) against a bare httpx
   client posting the same signed bodies over one keep-alive connection,
   alternating, two rounds each. Goal: the platform at >= 0.5 of the bare rate.
2. document_create p50 with the webhook recorder on (one endpoint wants
   every type, so each write also records an event) and off, alternating
   write by write. Goal: recording adds < 10% to the write's p50.

``ratio()`` returns the figures as a dict.
"""

from __future__ import annotations

import subprocess
import sys
import time

import requests
from django.conf import settings

from apps.billing.models import Plan
from apps.content.services import DocumentInput, document_bulk_create, document_create
from apps.outbox import services as outbox_services
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from apps.webhooks import delivery, recording
from apps.webhooks.models import Delivery, Endpoint, Event
from apps.webhooks.services import endpoint_create, endpoint_delete
from tests.benchmarks._setup import percentile
from tests.support import ROOT, free_port

SLUG = "bench-hooks"


def bench_tenant() -> Tenant:
    public_tenant_ensure()
    shard_register_configured()
    tenant = Tenant.objects.filter(slug=SLUG).select_related("shard").first()
    if tenant is None:
        tenant = tenant_create(slug=SLUG, name="Bench Hooks", admin_email=f"owner@{SLUG}.test",
                               admin_password="bench-password", plan="enterprise").tenant
    Plan.objects.filter(code="enterprise").update(max_documents=100_000_000)
    return Tenant.objects.select_related("shard").get(pk=tenant.pk)


class Receiver:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "tests.webhook_receiver", str(self.port)], cwd=ROOT,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def fresh_endpoint(tenant, receiver: Receiver) -> str:
    """The tenant's only endpoint, to the receiver; its secret."""
    with tenant_activated(tenant):
        for endpoint in Endpoint.objects.all():
            endpoint_delete(endpoint=endpoint)
        Event.objects.all().delete()
        made = endpoint_create(url=f"{receiver.url}/hooks", event_types=["*"])
    requests.post(f"{receiver.url}/_control", json={"secret": made.secret}, timeout=5).raise_for_status()
    return made.secret


def platform_rate(tenant, count: int) -> float:
    with tenant_activated(tenant):
        Delivery.objects.all().delete()
        Event.objects.all().delete()
        for start in range(0, count, 500):
            document_bulk_create(documents=[DocumentInput(title="bench", body="x" * 200)] * min(500, count - start))
        assert Event.objects.filter(fanned_out=False).count() == count
        started = time.perf_counter()  # the run makes the deliveries too (fan-out), then sends them
        while delivery.run(budget=60):
            pass
        seconds = time.perf_counter() - started
        assert Delivery.objects.filter(state="delivered").count() == count
    return count / seconds


def bare_rate(tenant, receiver: Receiver) -> float:
    """The same bodies and signature headers, posted by a bare httpx client."""
    import httpx

    with tenant_activated(tenant):
        endpoint = Endpoint.objects.get()
        secrets = delivery.endpoint_secrets(endpoint)
        prepared = []
        for event in Event.objects.all():
            body = delivery.body_of(event, tenant)
            prepared.append((body, delivery.signing.headers(secrets, event.public_id, int(time.time()), body)))
    with httpx.Client(timeout=10) as client:
        started = time.perf_counter()
        for body, headers in prepared:
            answer = client.post(f"{receiver.url}/hooks", content=body,
                                 headers={"Content-Type": "application/json", **headers})
            assert answer.status_code == 200, answer.text
        seconds = time.perf_counter() - started
    return len(prepared) / seconds


def write_p50s(tenant, writes: int) -> tuple[float, float]:
    """document_create p50 (s) with the recorder registered, and without,
    alternating write by write so that both see the same machine."""
    on, off = [], []
    recorders = outbox_services._recorders["tenant"]
    with tenant_activated(tenant):
        for _ in range(20):
            document_create(title="warm-up")
        try:
            for n in range(writes):
                for sink, enabled in ((on, True), (off, False)):
                    if enabled != (recording.record_tenant_events in recorders):
                        (recorders.append if enabled else recorders.remove)(recording.record_tenant_events)
                    started = time.perf_counter()
                    document_create(title=f"bench {n}", body="x" * 200)
                    sink.append(time.perf_counter() - started)
        finally:
            if recording.record_tenant_events not in recorders:
                recorders.append(recording.record_tenant_events)
    return percentile(on, 50), percentile(off, 50)


def ratio(deliveries: int = 2000, writes: int = 600) -> dict:
    settings.WEBHOOKS_ALLOW_LOOPBACK = settings.WEBHOOKS_ALLOW_HTTP = True
    tenant = bench_tenant()
    receiver = Receiver()
    try:
        fresh_endpoint(tenant, receiver)
        platform, bare = [], []
        for _ in range(2):
            platform.append(platform_rate(tenant, deliveries))
            bare.append(bare_rate(tenant, receiver))
        with_hooks, without = write_p50s(tenant, writes)
    finally:
        receiver.stop()
    return {"deliveries_per_s": max(platform), "bare_per_s": max(bare), "delivery_ratio": max(platform) / max(bare),
            "write_p50_ms": with_hooks * 1000, "write_p50_without_ms": without * 1000,
            "added": with_hooks / without - 1, "rounds": {"platform": platform, "bare": bare}}


def main() -> None:
    deliveries = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    writes = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    figures = ratio(deliveries, writes)
    rounds = figures["rounds"]
    print(f"deliveries to a receiver process on loopback, {deliveries} per round, best of 2 rounds")
    print(f"  platform delivery run:  {figures['deliveries_per_s']:8.0f} /s   (rounds: "
          f"{', '.join(f'{r:.0f}' for r in rounds['platform'])})")
    print(f"  bare httpx client:      {figures['bare_per_s']:8.0f} /s   (rounds: "
          f"{', '.join(f'{r:.0f}' for r in rounds['bare'])})")
    print(f"  ratio:                  {figures['delivery_ratio']:8.2f}      (goal >= 0.5)")
    print(f"document_create p50 with webhook recording: {figures['write_p50_ms']:.2f} ms, without: "
          f"{figures['write_p50_without_ms']:.2f} ms, added {figures['added'] * 100:+.1f}% (goal < 10%)")


if __name__ == "__main__":
    main()
