"""Event ingest through the API next to raw COPY into the same partitioned table.

    bin/dev bench ingest [BATCHES]    (default 40 batches of 1,000 events per round, 3 rounds)
    bin/dev bench ingest --profile    (one batch of 1,000 in process under cProfile, top functions)

API: POST /api/v1/events with 1,000 events per request (an API key, the
project's gunicorn configuration: 2 workers x 8 threads) from 4 clients.
Yardstick: raw COPY of the same rows, 1,000 per transaction (psycopg's
``copy.write_row``), into the same tenant's ``analytics_event`` from 4
connections. Rounds alternate (API, COPY, API, ...) so both see the same
machine; the figure is the median ratio of the rounds. Goal: >= 0.5.

``ratio()`` runs the comparison and returns the figures as a dict.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import requests
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.services import api_key_create
from apps.analytics.models import DailyRollup, Event
from apps.billing.models import Plan
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.support import Gunicorn, test_database_url

SLUG = "bench-ingest"
BATCH = 1000
CLIENTS = 4
TYPES = ("page.view", "signup", "click", "search", "export.requested")


def setup() -> tuple[Tenant, str]:
    public_tenant_ensure()
    shard_register_configured()
    tenant = Tenant.objects.filter(slug=SLUG).select_related("shard").first()
    if tenant is None:
        tenant = tenant_create(slug=SLUG, name="Bench Ingest", admin_email=f"owner@{SLUG}.test",
                               admin_password="bench-password", plan="enterprise").tenant
    Plan.objects.filter(code="enterprise").update(rate_limit_per_minute=100_000_000,
                                                  max_events_per_month=2_000_000_000)
    owner = User.objects.get(email=f"owner@{SLUG}.test")
    key = api_key_create(tenant_id=tenant.pk, name="bench ingest", scopes=["write"], created_by=owner).key
    return tenant, key


def sample_events(seed: int) -> list[dict]:
    now = timezone.now()
    return [{"type": TYPES[(seed + i) % len(TYPES)],
             "timestamp": (now - dt.timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
             "properties": {"path": f"/docs/{seed}/{i}", "referrer": "https://example.com/", "ms": i % 997}}
            for i in range(BATCH)]


def clear(tenant: Tenant) -> None:
    with tenant_activated(tenant):
        Event.objects.all().delete()
        DailyRollup.objects.all().delete()


def api_round(server: Gunicorn, tenant: Tenant, key: str, batches: int) -> float:
    bodies = [json.dumps({"events": sample_events(n)}) for n in range(CLIENTS)]
    headers = {"Host": f"{tenant.slug}.localhost", "Authorization": f"Bearer {key}",
               "Content-Type": "application/json"}
    local = threading.local()

    def post(number: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.post(f"{server.url}/api/v1/events", data=bodies[number % CLIENTS], headers=headers,
                                timeout=60)
        assert response.status_code == 202, response.text[:500]

    for number in range(CLIENTS):  # warm up every worker thread a little
        post(number)
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(post, range(batches)))
    return batches * BATCH / (time.perf_counter() - started)


def copy_round(tenant: Tenant, batches: int) -> float:
    url = test_database_url(tenant.shard.alias)
    received = timezone.now()
    rows = [[(dt.datetime.fromisoformat(e["timestamp"]), e["type"], json.dumps(e["properties"]), received)
             for e in sample_events(n)] for n in range(CLIENTS)]
    counter = iter(range(batches))
    lock = threading.Lock()

    def worker(client: int) -> None:
        with psycopg.connect(url) as conn:
            conn.execute(f'SET search_path = "{tenant.schema_name}"')
            conn.commit()
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                with conn.transaction(), conn.cursor() as cursor:
                    with cursor.copy("COPY analytics_event (occurred_at, event_type, properties, received_at) "
                                     "FROM STDIN") as copy:
                        for row in rows[client]:
                            copy.write_row(row)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(client,)) for client in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return batches * BATCH / (time.perf_counter() - started)


def ratio(batches: int = 40, rounds: int = 3, verbose: bool = False) -> dict:
    """Rows per second of the API and of raw COPY, measured in alternation."""
    tenant, key = setup()
    api_rates, copy_rates = [], []
    with Gunicorn(workers=2, env={"LOG_LEVEL": "ERROR", "SHED_ENABLED": "0"}) as server:
        for number in range(rounds):
            clear(tenant)
            api_rates.append(api_round(server, tenant, key, batches))
            clear(tenant)
            copy_rates.append(copy_round(tenant, batches))
            if verbose:
                print(f"round {number + 1}: API {api_rates[-1]:9.0f} rows/s   raw COPY {copy_rates[-1]:9.0f} rows/s"
                      f"   ratio {api_rates[-1] / copy_rates[-1]:.2f}", flush=True)
    clear(tenant)
    ratios = [a / c for a, c in zip(api_rates, copy_rates)]
    return {"api_rows_per_s": statistics.median(api_rates), "copy_rows_per_s": statistics.median(copy_rates),
            "ratio": statistics.median(ratios), "goal": 0.5, "batch": BATCH, "clients": CLIENTS}


def profile(repeat: int = 20) -> None:
    """One request of 1,000 events through Django's test client (the full
    middleware and view, in process) under cProfile: where the Python goes."""
    import cProfile
    import pstats

    from django.test import Client

    tenant, key = setup()
    client = Client(HTTP_HOST=f"{tenant.slug}.localhost", HTTP_AUTHORIZATION=f"Bearer {key}")
    bodies = [json.dumps({"events": sample_events(n)}) for n in range(repeat)]

    def post(body: str) -> None:
        response = client.post("/api/v1/events", data=body, content_type="application/json")
        assert response.status_code == 202, response.content[:500]

    clear(tenant)
    post(bodies[0])  # warm up: connections, caches, imports
    started = time.perf_counter()
    for body in bodies:
        post(body)
    print(f"unprofiled: {(time.perf_counter() - started) / repeat * 1000:.1f} ms per request of {BATCH} events")
    profiler = cProfile.Profile()
    profiler.enable()
    for body in bodies:
        post(body)
    profiler.disable()
    clear(tenant)
    print(f"profiled, {repeat} requests:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def main() -> None:
    if sys.argv[1:2] == ["--profile"]:
        profile()
        return
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    print(f"{batches} batches of {BATCH} events per round from {CLIENTS} clients; gunicorn 2 workers x 8 threads")
    figures = ratio(batches, verbose=True)
    print(f"median: API {figures['api_rows_per_s']:.0f} rows/s, raw COPY {figures['copy_rows_per_s']:.0f} rows/s, "
          f"ratio {figures['ratio']:.2f} (goal >= {figures['goal']})")


if __name__ == "__main__":
    main()
