"""The console's job pages (and the tenant admin's failed jobs) with a large
jobs_job table.

    bin/dev bench job_pages [ROWS] [--keep]    (default 1,000,000 rows; --keep reuses rows made before)

Fills jobs_job with ROWS records in one INSERT ... SELECT (states, tasks and
tenants in realistic proportions: mostly succeeded, some retrying, failed
and dead; 1,000 tenants, three of them real ones with a tenant admin),
ANALYZEs, then times each page through Django's test client in this
process (request, queries, template), 7 times each after one warm-up:
median and slowest. Also the whole overview page (its job and worker
readings included) and the jobs reading alone.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from django.db import connection
from django.test import Client

from apps.accounts.models import User
from apps.jobs.models import Job
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create

SLUGS = ("bench-jobs-a", "bench-jobs-b", "bench-jobs-c")
OPERATOR = "bench-jobs@console.test"
TASKS = ["search.index_documents", "notifications.send_email", "reports.run_export", "search.rebuild_index",
         "outbox.sweep", "caching.sweep_invalidations", "jobs.fairness_sweep", "webhooks.deliver"]
# (state, per mille)
STATES = [("succeeded", 900), ("skipped", 20), ("queued", 25), ("scheduled", 5), ("running", 5),
          ("retrying", 10), ("failed", 10), ("dead", 20), ("discarded", 5)]

FILL_SQL = """
WITH s AS (SELECT * FROM unnest(%s::text[], %s::int[]) AS t(state, upto))
INSERT INTO jobs_job (task_id, task_name, queue, tenant_id, tenant_slug, state, seq, attempts, eta, created_at,
    started_at, finished_at, runtime, worker, arguments, error, history, batch_id, dead_letter_id, updated_at)
SELECT md5(%s || i::text), (%s::text[])[1 + i %% 8], 'default', t.id, t.slug,
    (SELECT state FROM s WHERE upto > (i * 7919) %% 1000 ORDER BY upto LIMIT 1), 10, 1 + i %% 3,
    NULL, now() - make_interval(secs => i * 0.6), now() - make_interval(secs => i * 0.6 - 1),
    now() - make_interval(secs => i * 0.6 - 2), 0.5, 'interactive@bench',
    '{"args": [], "kwargs": {"export_id": "' || md5(i::text) || '", "effect_key": "k' || i || '"}}',
    CASE WHEN i %% 50 = 0 THEN 'RetryLater: email provider circuit is open' ELSE '' END,
    '[]'::jsonb, NULL, NULL, now() - make_interval(secs => i * 0.6)
FROM generate_series(1::bigint, %s) AS i
CROSS JOIN LATERAL (SELECT CASE WHEN i %% 10 < 3 THEN (%s::bigint[])[1 + i %% 3] ELSE 1000000 + i %% 1000 END AS id,
                           CASE WHEN i %% 10 < 3 THEN (%s::text[])[1 + i %% 3] ELSE 'tenant-' || i %% 1000 END
                           AS slug) t
"""


def tenants() -> list:
    from apps.tenancy.models import Tenant

    public_tenant_ensure()
    shard_register_configured()
    made = []
    for slug in SLUGS:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = tenant_create(slug=slug, name=slug, admin_email=f"owner@{slug}.test",
                                   admin_password="bench-password").tenant
        made.append(tenant)
    return made


def fill(rows: int, made: list) -> float:
    started = time.monotonic()
    Job.objects.all().delete()
    bounds, total = [], 0
    for _, share in STATES:
        total += share
        bounds.append(total)
    with connection.cursor() as cursor:
        cursor.execute(FILL_SQL, [[s for s, _ in STATES], bounds, f"bench-{time.time()}-", TASKS, rows,
                                  [t.pk for t in made], [t.slug for t in made]])
        cursor.execute("ANALYZE jobs_job")
    return time.monotonic() - started


def timed(client: Client, url: str, runs: int = 7, **headers) -> tuple[float, float, int]:
    response = client.get(url, **headers)
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url, **headers)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds), len(response.content)


def operator() -> Client:
    User.objects.filter(email=OPERATOR).delete()
    user = User.objects.create_superuser(email=OPERATOR, password="bench-password")
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def pages(made: list) -> list[tuple[str, str]]:
    first = Job.objects.filter(tenant_id=made[0].pk, state="dead").order_by("-created_at").first()
    deep = Job.objects.filter(state="succeeded").order_by("-created_at", "-task_id")[200_000:200_001].first()
    cursor = f"{deep.created_at.isoformat()}|{deep.task_id}" if deep else ""
    from urllib.parse import quote

    return [
        ("jobs, running (the default tab)", "/admin/console/jobs/"),
        ("jobs, succeeded (90% of rows)", "/admin/console/jobs/?state=succeeded"),
        ("jobs, all states", "/admin/console/jobs/?state=all"),
        ("jobs, dead, one tenant", f"/admin/console/jobs/?state=dead&tenant={made[0].slug}"),
        ("jobs, succeeded, one task", "/admin/console/jobs/?state=succeeded&task=reports.run_export"),
        ("jobs, all, argument search (1 match)",
         f"/admin/console/jobs/?state=all&q={json.loads(deep.arguments)['kwargs']['export_id'][:16]}"
         if deep else "/admin/console/jobs/?state=all&q=nomatch"),
        ("jobs, succeeded, argument search (many)", "/admin/console/jobs/?state=succeeded&q=effect_key"),
        ("jobs, succeeded, page 4,001 by keyset", f"/admin/console/jobs/?state=succeeded&after={quote(cursor)}"),
        ("one job", f"/admin/console/jobs/{first.task_id}/" if first else "/admin/console/jobs/"),
        ("overview (all readings)", "/admin/console/"),
    ]


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rows = int(args[0]) if args else 1_000_000
    made = tenants()
    if "--keep" in sys.argv and Job.objects.exists():
        print(f"reusing {Job.objects.count():,} rows")
    else:
        print(f"filled {rows:,} rows in {fill(rows, made):.1f} s")
    client = operator()
    print(f"{'page':<44} {'median':>9} {'slowest':>9} {'bytes':>8}")
    for label, url in pages(made):
        median, slowest, size = timed(client, url)
        print(f"{label:<44} {median * 1000:7.1f} ms {slowest * 1000:7.1f} ms {size:>8}")
    owner = Client(HTTP_HOST=f"{made[0].slug}.localhost")
    owner.force_login(User.objects.get(email=f"owner@{made[0].slug}.test"))
    median, slowest, size = timed(owner, "/admin/failed-jobs/")
    print(f"{'tenant admin: failed jobs':<44} {median * 1000:7.1f} ms {slowest * 1000:7.1f} ms {size:>8}")
    from apps.backoffice.console.readings import jobs_source, workers_source

    for name, source in (("jobs reading (overview)", jobs_source), ("workers reading (overview)", workers_source)):
        seconds = []
        for _ in range(7):
            started = time.perf_counter()
            source()
            seconds.append(time.perf_counter() - started)
        print(f"{name:<44} {statistics.median(seconds) * 1000:7.1f} ms {max(seconds) * 1000:7.1f} ms")
    User.objects.filter(email=OPERATOR).delete()


if __name__ == "__main__":
    main()
