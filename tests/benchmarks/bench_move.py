"""Write-freeze time of a tenant move, for a tenant with ~100 MB of data.

    bin/dev bench move [MEGABYTES]    (default 100)
"""

import sys

from django.db import connections

from apps.content.models import Document
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Shard, Tenant
from apps.tenancy.moves import tenant_move
from apps.tenancy.services import shard_register_configured, tenant_create

BODY = "lorem ipsum dolor sit amet " * 38  # ~1 KB per document


def schema_bytes(alias: str, schema: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 't')",
            [schema],
        )
        return int(cursor.fetchone()[0])


if __name__ == "__main__":
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    shard_register_configured()
    shards = list(Shard.objects.filter(state=Shard.State.ACTIVE).order_by("name"))
    if len(shards) < 2:
        sys.exit("needs two shards (bin/dev sets up shard b)")
    tenant = Tenant.objects.filter(slug="bench-big").select_related("shard").first()
    if tenant is None:
        tenant = tenant_create(slug="bench-big", name="Bench Big", admin_email="bench@bench.test",
                               shard=shards[0].name).tenant
    with tenant_activated(tenant):
        while schema_bytes(tenant.shard.alias, tenant.schema_name) < megabytes * 1_000_000:
            Document.objects.bulk_create(
                [Document(title=f"doc {i}", body=BODY, author_id=i) for i in range(10_000)], batch_size=2_000
            )
        rows = Document.objects.count()
    size = schema_bytes(tenant.shard.alias, tenant.schema_name)
    target = next(s for s in shards if s.pk != tenant.shard_id)
    print(f"tenant bench-big: {rows} documents, {size / 1e6:.0f} MB on {tenant.shard.name}; moving to {target.name}")
    report = tenant_move(tenant=tenant, target=target, report=lambda line: None)
    print(f"copied {report.bytes_copied / 1e6:.0f} MB (COPY binary) in {len(report.tables)} tables")
    print(f"write freeze: {report.freeze_seconds:.2f} s; whole move: {report.total_seconds:.2f} s")
