"""Provisioning time per tenant (schema + migrations + registry rows).

    bin/dev bench provisioning [COUNT]    (default 300; existing bench tenants are kept)
"""

import sys
import time

from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.benchmarks._setup import summary


def ensure_bench_tenants(count: int) -> list[float]:
    public_tenant_ensure()
    shard_register_configured()
    existing = set(Tenant.objects.filter(slug__startswith="bench-").values_list("slug", flat=True))
    timings = []
    for index in range(count):
        slug = f"bench-{index:04d}"
        if slug in existing:
            continue
        started = time.perf_counter()
        tenant_create(slug=slug, name=f"Bench {index}", admin_email="bench@bench.test")
        timings.append(time.perf_counter() - started)
        if len(timings) % 50 == 0:
            print(f"  provisioned {len(timings)}", flush=True)
    return timings


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    timings = ensure_bench_tenants(count)
    if timings:
        print(f"provisioning (migrate path): {summary(timings)}")
    else:
        print("all bench tenants exist already; nothing provisioned")
    from django.db.models import Count

    placement = Tenant.objects.filter(slug__startswith="bench-").values("shard__name").annotate(n=Count("id"))
    print("placement: " + ", ".join(f"{row['shard__name']}={row['n']}" for row in placement.order_by("shard__name")))
