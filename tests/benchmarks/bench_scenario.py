"""A scenario load test: many tenants, a realistic mix, a fixed arrival rate (Locust, headless).

    bin/dev bench scenario [RATE] [SECONDS]         fixed rate (default 40 requests/s for 30 s)
    bin/dev bench scenario --find-max [SECONDS]     find the highest sustainable rate, then run at 70% of it
    options: --tenants N (default 50), --users N (default: one per 2 requests/s), --start N (first step of --find-max, 5/s)

Everything runs on loopback and is started here: a private Redis broker,
gunicorn with the project's configuration (2 workers x 8 threads), Celery
workers for the interactive queues (emails, search, default) and for
exports, and Locust (tests/benchmarks/locustfile.py) as a subprocess with
FastHttpUser and ``constant_throughput`` users. The tenants (``scen-NNN``,
a plan with high rate limits) are made on the first run and reused, each
with an API key and 20 searchable documents. A 10 s warm-up precedes the
measured runs. Load shedding stays on, as deployed: on an overloaded
machine its 503s show up as errors of the low-priority endpoints.

Mix (weights): document reads 45, document lists 15, usage 4, searches 10,
document writes 12, event batches of 50 12, export requests 2. Printed per
endpoint: requests, throughput, p50, p99 and failures. ``--find-max`` steps
the rate up (x1.5 from 5/s, or --start N, 12 s a step) until the achieved rate falls
below 90% of the target, errors pass 1%, or p99 passes 1 s; the last step
that held is the maximum, and the final run at 70% of it reports the p99
of reads against the goal (< 100 ms).
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from apps.accounts.models import ApiKey, User
from apps.accounts.services import api_key_create
from apps.billing.models import Plan
from apps.content.models import Document
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.routers import tenant_write_alias
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.support import ROOT, Gunicorn, seed_searchable_documents
from tests.workers import CeleryWorker, RedisBroker

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
READ_GOAL_MS = 100.0


def option(name: str, default: int) -> int:
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


def setup(count: int) -> list[dict]:
    """The scenario's tenants: [{"host", "key", "documents"}], made once."""
    public_tenant_ensure()
    shard_register_configured()
    template = Plan.objects.get(code="enterprise")
    plan, _ = Plan.objects.update_or_create(code="bench-scenario", defaults=dict(
        name="Bench scenario", rank=980, max_documents=10_000_000, max_events_per_month=2_000_000_000,
        max_seats=template.max_seats, max_api_keys=template.max_api_keys, rate_limit_per_minute=10_000_000,
        task_concurrency=2))
    targets = []
    for number in range(count):
        slug = f"scen-{number:03d}"
        tenant = Tenant.objects.filter(slug=slug).select_related("shard").first()
        if tenant is None:
            print(f"  provisioning {slug} ({number + 1}/{count})", flush=True)
            tenant = tenant_create(slug=slug, name=slug, admin_email=f"owner@{slug}.test",
                                   admin_password="bench-password").tenant
        Tenant.objects.filter(pk=tenant.pk).update(plan=plan)
        owner = User.objects.get(email=f"owner@{slug}.test")
        ApiKey.objects.filter(tenant_id=tenant.pk, name="scenario").delete()
        key = api_key_create(tenant_id=tenant.pk, name="scenario", scopes=["admin"], created_by=owner).key
        with tenant_activated(tenant):
            # The primary: a replica may not have the new schema yet.
            primary = Document.objects.using(tenant_write_alias())
            if primary.count() < 20:
                seed_searchable_documents(20, words=60)
            documents = list(primary.order_by("pk").values_list("pk", flat=True)[:20])
        targets.append({"host": f"{slug}.localhost", "key": key, "documents": documents})
    return targets


def locust(url: str, targets_file: str, *, rate: float, users: int, seconds: int) -> list[dict]:
    """One Locust run at ``rate`` requests/s in total; its per-endpoint rows.

    ``users`` 0: one simulated user per 2 requests/s (at least 2), enough
    while responses take under half a second, and few enough that starting
    them (spread over 2 s) is no burst."""
    users = users or max(2, math.ceil(rate / 2))
    with tempfile.TemporaryDirectory(prefix="scenario-") as folder:
        prefix = os.path.join(folder, "run")
        env = dict(os.environ, SCENARIO_TARGETS=targets_file, SCENARIO_USER_RATE=str(rate / users))
        run = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
             "--users", str(users), "--spawn-rate", str(max(1, users / 2)), "--run-time", f"{seconds}s", "--stop-timeout", "5",
             "--csv", prefix, "--only-summary", "--loglevel", "ERROR", "--exit-code-on-error", "0"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
        if run.returncode != 0 or not os.path.exists(f"{prefix}_stats.csv"):
            sys.exit(f"locust failed ({run.returncode}):\n{run.stderr[-3000:]}")
        with open(f"{prefix}_stats.csv") as stats:
            rows = list(csv.DictReader(stats))
        with open(f"{prefix}_failures.csv") as failures:
            for failure in csv.DictReader(failures):  # why requests failed, one line per endpoint and error
                print(f"    ! {failure['Occurrences']:>5} x {failure['Name']}: {failure['Error'][:120]}", flush=True)
        return rows


def figures(rows: list[dict]) -> dict:
    total = next(r for r in rows if r["Name"] == "Aggregated")
    reads = [r for r in rows if r["Name"].startswith("read:")]
    read_count = sum(int(r["Request Count"]) for r in reads)
    # The p99 of reads: the worst p99 among the read endpoints (Locust keeps
    # no merged histogram for a subset of endpoints).
    return {"rps": float(total["Requests/s"]), "requests": int(total["Request Count"]),
            "failures": int(total["Failure Count"]), "p50_ms": float(total["50%"] or 0),
            "p99_ms": float(total["99%"] or 0), "read_requests": read_count,
            "read_p99_ms": max((float(r["99%"] or 0) for r in reads), default=0.0)}


def show(rows: list[dict], title: str) -> None:
    print(title)
    print(f"  {'endpoint':<34} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7}")
    for row in rows:
        name = "all" if row["Name"] == "Aggregated" else row["Name"]
        print(f"  {name:<34} {row['Request Count']:>8} {float(row['Requests/s']):7.1f} {row['50%']:>7} "
              f"{row['99%']:>7} {row['Failure Count']:>7}", flush=True)


def find_max(url: str, targets_file: str, users: int, start: float) -> float:
    rate, best = start, 0.0
    while rate < 5000:
        result = figures(locust(url, targets_file, rate=rate, users=users, seconds=12))
        held = (result["rps"] >= 0.9 * rate and result["failures"] <= 0.01 * max(1, result["requests"])
                and result["p99_ms"] <= 1000)
        print(f"  step {rate:7.1f}/s: achieved {result['rps']:7.1f}/s, p99 {result['p99_ms']:.0f} ms, "
              f"errors {result['failures']}/{result['requests']} -> {'held' if held else 'saturated'}", flush=True)
        if not held:
            break
        best = result["rps"]
        rate *= 1.5
    return best


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    for name in ("--tenants", "--users", "--start"):
        if name in sys.argv:
            args.remove(sys.argv[sys.argv.index(name) + 1])
    find = "--find-max" in sys.argv
    tenants, users = option("--tenants", 50), option("--users", 0)
    seconds = int(args[-1]) if (find and args) or len(args) > 1 else 30
    rate = float(args[0]) if args and not find else 40.0
    if rate <= 0 or seconds <= 0 or tenants <= 0 or users < 0:
        sys.exit("RATE, SECONDS and --tenants must be positive, --users 0 or more")
    print(f"setting up {tenants} tenants", flush=True)
    targets = setup(tenants)
    broker = RedisBroker().start()
    worker_env = {"DJANGO_SETTINGS_MODULE": "config.settings.local", "LOG_LEVEL": "WARNING"}
    workers = [CeleryWorker(broker_url=broker.url, queues="emails,search,default", name="scen-interactive",
                            concurrency=2, env=worker_env),
               CeleryWorker(broker_url=broker.url, queues="exports", name="scen-exports", concurrency=1,
                            env=worker_env)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as targets_file:
        json.dump(targets, targets_file)
    try:
        for worker in workers:
            worker.start()
        with Gunicorn(workers=2, env={"CELERY_BROKER_URL": broker.url, "LOG_LEVEL": "WARNING"}) as server:
            print(f"gunicorn 2 workers x 8 threads, Celery workers (interactive x2, exports x1), "
                  f"Locust ({users or 'rate / 2'} users) over {tenants} tenants", flush=True)
            # Warm-up, not reported: every tenant's first requests fill
            # process caches and connections.
            locust(server.url, targets_file.name, rate=min(rate, 20.0), users=users, seconds=10)
            if find:
                print("finding the maximum rate:", flush=True)
                top = find_max(server.url, targets_file.name, users, float(option("--start", 5)))
                if not top:
                    sys.exit("not even the first step held on this machine (see --start)")
                rate = 0.7 * top
                print(f"maximum sustained: {top:.1f} requests/s; running at 70%: {rate:.1f}/s for {seconds} s")
            rows = locust(server.url, targets_file.name, rate=rate, users=users, seconds=seconds)
            show(rows, f"target {rate:.1f} requests/s for {seconds} s:")
            result = figures(rows)
            verdict = "met" if result["read_p99_ms"] < READ_GOAL_MS else "missed"
            print(f"reads: {result['read_requests']} requests, p99 {result['read_p99_ms']:.0f} ms "
                  f"(goal < {READ_GOAL_MS:.0f} ms: {verdict}); all: {result['rps']:.1f} req/s, "
                  f"errors {result['failures']}/{result['requests']}")
    finally:
        for worker in workers:
            worker.stop()
        broker.stop()
        os.unlink(targets_file.name)


if __name__ == "__main__":
    main()
