"""Peak memory of a streamed export of 1,000,000 documents (CSV and XLSX).

    bin/dev bench export [ROWS] [FORMATS]    (default 1000000 csv,xlsx)

Runs the export task body in this process and reports the Python heap peak
(tracemalloc) and the process's peak RSS growth during each export.
"""

import resource
import sys
import time
import tracemalloc

from django.db import connections

from apps.reports.models import ExportRequest
from apps.reports.tasks import run_export
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.routers import tenant_write_alias
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    formats = (sys.argv[2] if len(sys.argv) > 2 else "csv,xlsx").split(",")
    public_tenant_ensure()
    shard_register_configured()
    tenant = Tenant.objects.filter(slug="bench-export").select_related("shard").first()
    if tenant is None:
        tenant = tenant_create(slug="bench-export", name="Bench Export", admin_email="bench@bench.test").tenant
    with tenant_activated(tenant):
        with connections[tenant_write_alias()].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM content_document")
            have = cursor.fetchone()[0]
            if have < rows:
                print(f"inserting {rows - have} documents...", flush=True)
                cursor.execute(
                    "INSERT INTO content_document (title, body, tags, status, author_id, version, created_at, updated_at) "
                    "SELECT 'document ' || g, 'body of document ' || g, ARRAY['tag' || (g %% 7)], 'published', g %% 100, "
                    "1, now(), now() FROM generate_series(1, %s) g", [rows - have])
        for fmt in formats:
            export = ExportRequest.objects.create(kind="documents", format=fmt)
            before = rss_mb()
            tracemalloc.start()
            started = time.perf_counter()
            run_export.apply(args=[str(export.pk)], headers={"tenant_id": tenant.pk}, throw=True)
            seconds = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            export.refresh_from_db()
            print(f"{fmt}: {export.rows_done} rows in {seconds:.1f} s; Python heap peak {peak / 1e6:.1f} MB; "
                  f"process peak RSS {rss_mb():.0f} MB (was {before:.0f} MB before the export)", flush=True)
