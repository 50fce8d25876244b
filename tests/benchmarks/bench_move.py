"""Write freeze and whole move time of a tenant move, by tenant size and path.

    bin/dev bench move [MEGABYTES ...] [--keep] [--verbose]    (default: 10 100; add 1000 for 1 GB, a few minutes)

For each size, one tenant (~1 KB documents) is filled to that size on shard
`b` and moved twice: b -> main through logical replication (b runs with
wal_level=logical; the freeze covers the switch only), then main -> b by the
locked copy (the machine's server on main runs with wal_level=replica; the
freeze covers the whole copy). The write freeze is from the freeze lease's
start to the registry flip, drain included (logical 0.2 s, locked
MOVE_DRAIN_SECONDS); the move time is from start to the old copy dropped.
No client traffic during the run: tests/test_online_moves.py moves under load.
"""

import sys
import time

from django.conf import settings
from django.db import connections

from apps.content.models import Document
from apps.fleet import logical
from apps.fleet.moves import tenant_move
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Move, Shard, Tenant
from apps.tenancy.placement import schema_bytes
from apps.tenancy.schemas import drop_schema
from apps.tenancy.services import shard_register_configured, tenant_create

BODY = "lorem ipsum dolor sit amet " * 38  # ~1 KB per document


def filled_tenant(megabytes: int, shard: Shard) -> Tenant:
    slug = f"bench-move-{megabytes}"
    tenant = Tenant.objects.filter(slug=slug).select_related("shard").first()
    if tenant is None:
        tenant = tenant_create(slug=slug, name=f"Bench {megabytes} MB", admin_email=f"bench@{slug}.test",
                               shard=shard.name).tenant
    if tenant.shard_id != shard.pk:
        tenant_move(tenant=tenant, target=shard)
        tenant = Tenant.objects.select_related("shard").get(pk=tenant.pk)
    with tenant_activated(tenant):
        while schema_bytes(tenant.shard.alias, [tenant.schema_name]) < megabytes * 1_000_000:
            Document.objects.bulk_create(
                [Document(title=f"doc {i}", body=BODY, author_id=i) for i in range(10_000)], batch_size=2_000)
    return tenant


def measure(tenant: Tenant, target: Shard) -> tuple[str, float, float, int, int]:
    started = time.perf_counter()

    def verbose(line: str) -> None:  # --verbose: the mover's own lines, timed
        print(f"      {time.perf_counter() - started:7.2f}s  {line}", flush=True)

    report = tenant_move(tenant=tenant, target=target, report=verbose if "--verbose" in sys.argv else lambda _: None)
    move = Move.objects.get(pk=report.move_id)
    return move.path, report.freeze_seconds, report.total_seconds, move.bytes_copied, report.lock_attempts


if __name__ == "__main__":
    sizes = [int(arg) for arg in sys.argv[1:] if arg.isdigit()] or [10, 100]
    shard_register_configured()
    shards = {s.name: s for s in Shard.objects.filter(state=Shard.State.ACTIVE)}
    if not {"main", "b"} <= set(shards):
        sys.exit("needs shards main and b (bin/dev sets up shard b)")
    if logical.wal_level(shards["b"].alias) != "logical":
        sys.exit("shard b's server must run with wal_level=logical (bin/dev sets it)")
    print(f"main: wal_level={logical.wal_level(shards['main'].alias)}; b: wal_level=logical; "
          f"locked-path drain {settings.MOVE_DRAIN_SECONDS:g}s; shared machine, no client load")
    print(f"{'size':>8} {'path':>8} {'rows':>9} {'MB':>8} {'freeze s':>9} {'move s':>8} {'locks':>6}")
    for megabytes in sizes:
        started = time.perf_counter()
        tenant = filled_tenant(megabytes, shards["b"])
        with tenant_activated(tenant):
            rows = Document.objects.using(tenant.shard.alias).count()  # the primary, not a lagging replica
        size = schema_bytes(tenant.shard.alias, [tenant.schema_name])
        print(f"  (filled {megabytes} MB tenant in {time.perf_counter() - started:.0f}s: {size / 1e6:.0f} MB)",
              flush=True)
        for target in ("main", "b"):
            tenant = Tenant.objects.select_related("shard").get(pk=tenant.pk)
            path, freeze, total, copied, locks = measure(tenant, shards[target])
            print(f"{megabytes:>6}MB {path:>8} {rows:>9} {copied / 1e6:>8.0f} {freeze:>9.3f} {total:>8.2f} {locks:>6}",
                  flush=True)
        if "--keep" not in sys.argv:
            tenant = Tenant.objects.select_related("shard").get(pk=tenant.pk)
            drop_schema(tenant.shard.alias, tenant.schema_name)
            tenant.delete()
    connections.close_all()
