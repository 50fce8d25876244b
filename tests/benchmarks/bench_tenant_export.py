"""Time and peak memory of a whole-tenant export (and its import) of ~1 GB.

    bin/dev bench tenant_export [MB] [--import]    (default 1024 MB)

Fills tenant "bench-tenant-export" with documents of about 1 KB each and one
event per document until its schema holds MB megabytes (heap and indexes, by
pg_total_relation_size), then runs the export in this process, as a worker
would: every table streamed by COPY into its part, the tar assembled and
stored. Prints the time, the archive's size and the process's peak RSS
growth (the goals: at most 10 minutes and under 150 MB for 1 GB). With
--import it imports the archive as a new tenant on the same shard and times that too.
"""

import resource
import sys
import tempfile
import time

from django.core.files.storage import default_storage
from django.db import connections
from django_tenants.utils import quote_schema_name as q

from apps.lifecycle import exporting, services
from apps.lifecycle.importing import import_archive
from apps.tenancy import schemas
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create

SLUG = "bench-tenant-export"
BATCH = 100_000


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def schema_mb(tenant) -> float:
    with connections[tenant.shard.alias].cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'", [tenant.schema_name])
        return float(cursor.fetchone()[0]) / 1e6


def fill(tenant, megabytes: float) -> None:
    schema = q(tenant.schema_name)
    while schema_mb(tenant) < megabytes:
        with connections[tenant.shard.alias].cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {schema}.content_document (title, body, tags, status, author_id, version, created_at, "
                "updated_at) SELECT 'document ' || g, repeat(md5(g::text), 28), ARRAY['tag' || (g %% 7)], "
                "'published', g %% 100, 1, now(), now() FROM generate_series(1, %s) g", [BATCH])
            cursor.execute(
                f"INSERT INTO {schema}.analytics_event (occurred_at, event_type, properties, received_at) "
                "SELECT now() - (g || ' seconds')::interval, 'view', jsonb_build_object('n', g, 'page', md5(g::text)), "
                "now() FROM generate_series(1, %s) g", [BATCH])
        print(f"  {schema_mb(tenant):.0f} MB", flush=True)


def main() -> None:
    megabytes = float(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else 1024
    public_tenant_ensure()
    shard_register_configured()
    tenant = Tenant.objects.filter(slug=SLUG).select_related("shard").first()
    if tenant is None:
        tenant = tenant_create(slug=SLUG, name="Bench Tenant Export", admin_email="bench@bench.test").tenant
    print(f"filling {SLUG} to {megabytes:.0f} MB...", flush=True)
    fill(tenant, megabytes)
    size = schema_mb(tenant)
    export = services.export_request(tenant=tenant, requested_by_id=None, enqueue=False)
    before = rss_mb()
    started = time.perf_counter()
    export = exporting.export_run(export.pk)
    seconds = time.perf_counter() - started
    print(f"export: schema {size:.0f} MB, {export.rows_done} rows, archive {export.size_bytes / 1e6:.0f} MB in "
          f"{seconds:.1f} s ({size / seconds:.1f} MB/s of schema); peak RSS {rss_mb():.0f} MB, "
          f"{rss_mb() - before:.0f} MB above the {before:.0f} MB before the export", flush=True)
    if "--import" in sys.argv:
        with tempfile.NamedTemporaryFile(suffix=".tar") as copy:
            with default_storage.open(export.file_name, "rb") as source:
                while chunk := source.read(1 << 20):
                    copy.write(chunk)
            copy.flush()
            slug = f"{SLUG}-copy"
            old = Tenant.objects.filter(slug=slug).first()
            if old is not None:
                schemas.drop_schema(old.shard.alias, old.schema_name)
                old.delete()
            before, started = rss_mb(), time.perf_counter()
            imported = import_archive(copy.name, slug=slug, shard=tenant.shard.name)
            print(f"import: {time.perf_counter() - started:.1f} s; peak RSS {rss_mb():.0f} MB "
                  f"({rss_mb() - before:.0f} MB above before)", flush=True)
            schemas.drop_schema(imported.shard.alias, imported.schema_name)
            imported.delete()
    default_storage.delete(export.file_name)


if __name__ == "__main__":
    main()
