"""Cost per query of setting the tenant's schema inside every transaction.

    bin/dev bench pgbouncer [QUERIES]    (default 3000 per case)

One tenant document read by primary key (the ORM, autocommit), on shard
`main`, through:

* direct, session SET: django-tenants' backend, one `SET search_path` per
  tenant switch (the default for a direct URL);
* direct, SET LOCAL: the pooled backend without PgBouncer (what the
  per-statement `SET LOCAL` costs by itself);
* PgBouncer, SET LOCAL: the pooled backend through a private PgBouncer in
  transaction mode (the extra hop included);

and, for the first and last, with the tenant switching on every query (a
worker thread serving many tenants).
"""

import statistics
import sys
import time

from django.conf import settings
from django.db import connections

from apps.content.models import Document
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.benchmarks._setup import percentile
from tests.pgbouncer import PgBouncer, database_aliases


def per_query(connection, tenants, queries: int, *, switch: bool) -> list[float]:
    documents = Document.objects.using(connection.alias)
    timings = []
    for n in range(queries):
        tenant = tenants[n % 2] if switch else tenants[0]
        if connection.schema_name != tenant.schema_name:
            connection.set_tenant(tenant)
        started = time.perf_counter()
        documents.filter(pk=1).first()
        timings.append(time.perf_counter() - started)
    return timings


def line(name: str, timings: list[float], baseline: float | None) -> None:
    median = statistics.median(timings) * 1e6
    extra = f"  ({median - baseline:+.0f} us)" if baseline is not None else ""
    print(f"  {name:<40} median {median:5.0f} us  p95 {percentile(timings, 95) * 1e6:5.0f} us{extra}")


if __name__ == "__main__":
    queries = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    public_tenant_ensure()
    shard_register_configured()
    tenants = []
    for slug in ("bench-pool-a", "bench-pool-b"):
        tenant = Tenant.objects.filter(slug=slug).first()
        tenants.append(tenant or tenant_create(slug=slug, name=slug, admin_email="bench@bench.test", shard="main").tenant)
    for tenant in tenants:
        with tenant_activated(tenant):
            if not Document.objects.filter(pk=1).exists():
                Document.objects.create(title=f"{tenant.slug} bench")

    main = connections["shard_main"].settings_dict
    direct = settings.SHARD_URLS["main"].split("?")[0]
    with (
        PgBouncer(main["HOST"], main["PORT"], pool_size=2) as bouncer,
        database_aliases(direct, "bench_direct") as (plain,),
        database_aliases(direct + "?pooling=transaction", "bench_direct_local") as (local,),
        database_aliases(bouncer.url(main["NAME"]), "bench_pgbouncer") as (pooled,),
    ):
        cases = {
            "direct, session SET": (plain, False),
            "direct, SET LOCAL": (local, False),
            "PgBouncer, SET LOCAL": (pooled, False),
            "direct, session SET, switching tenant": (plain, True),
            "PgBouncer, SET LOCAL, switching tenant": (pooled, True),
        }
        for connection, switch in cases.values():
            per_query(connection, tenants, 200, switch=switch)  # warm-up: connections, plans, caches
        timings = {name: [] for name in cases}
        rounds = 10  # the cases take turns, so that a busy machine slows them alike
        for _ in range(rounds):
            for name, (connection, switch) in cases.items():
                timings[name] += per_query(connection, tenants, queries // rounds, switch=switch)
    print(f"one primary-key read per query, {queries} queries per case")
    base = statistics.median(timings["direct, session SET"]) * 1e6
    for name, values in timings.items():
        line(name, values, None if name == "direct, session SET" else base)
