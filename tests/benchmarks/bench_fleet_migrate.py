"""`manage.py migrate` over a fleet of tenant schemas while gunicorn serves traffic.

    bin/dev bench fleet_migrate [SCHEMAS] [RATE]    (default 1000 schemas, 30 requests/s)

Schemas are cloned from one provisioned tenant per shard (tests/fleet.py).
A real gunicorn serves reads (document lists) and writes (document creates)
to 50 of the tenants at a steady rate, from 8 client threads, the whole
time. Measured, each with the traffic figures of its own window:

  (a) no-op migrate: every schema up to date;
  (b) a one-column migration (ALTER TABLE content_document ADD COLUMN,
      nullable: the expand step) over every schema, in a throwaway app on the
      migrate subprocess's PYTHONPATH; the platform serving traffic runs
      without it. The column is dropped again at the start of the next run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from apps.accounts.models import Membership, User
from apps.accounts.tokens import issue_user_token
from apps.billing.models import Plan
from apps.tenancy import planes
from apps.tenancy.models import Shard, Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.benchmarks._setup import percentile
from tests.fleet import add_column, clone_tenants, forget_migration_app, write_migration_app
from tests.support import ROOT, Gunicorn

TRAFFIC_TENANTS = 50
CLIENTS = 8


def ensure_fleet(count: int) -> list[Tenant]:
    public_tenant_ensure()
    shard_register_configured()
    shards = list(Shard.objects.filter(alias__in=planes.shard_aliases()).order_by("name"))
    have = Tenant.objects.filter(slug__startswith="fleet-").count()
    for shard in shards:
        template = Tenant.objects.filter(slug=f"fleet-tmpl-{shard.name}").select_related("shard").first()
        template = template or tenant_create(slug=f"fleet-tmpl-{shard.name}", name=f"Fleet template {shard.name}",
                                             admin_email="fleet@bench.test", plan="enterprise", shard=shard.name).tenant
        slugs = [f"fleet-{i:05d}" for i in range(count - len(shards)) if i % len(shards) == shards.index(shard)]
        started = time.perf_counter()
        made = clone_tenants(template, slugs)
        if made:
            print(f"  cloned {len(made)} schemas on shard {shard.name} in {time.perf_counter() - started:.1f}s",
                  flush=True)
    fleet = list(Tenant.objects.filter(slug__startswith="fleet-").select_related("shard").order_by("slug"))
    if len(fleet) != have:
        print(f"  fleet: {len(fleet)} tenant schemas on {len(shards)} shard(s)", flush=True)
    return fleet


def traffic_credentials(fleet: list[Tenant]) -> list[tuple[str, str]]:
    """(host, bearer token) for TRAFFIC_TENANTS tenants spread over the fleet."""
    Plan.objects.filter(code="enterprise").update(rate_limit_per_minute=100_000_000)
    user = User.objects.get(email="fleet@bench.test")
    chosen = fleet[:: max(1, len(fleet) // TRAFFIC_TENANTS)][:TRAFFIC_TENANTS]
    Tenant.objects.filter(pk__in=[t.pk for t in chosen]).update(plan=Plan.objects.get(code="enterprise"))
    Membership.objects.bulk_create([Membership(user=user, tenant=t, role=Membership.Role.OWNER) for t in chosen],
                                   ignore_conflicts=True)
    return [(f"{t.slug}.localhost", issue_user_token(user_id=user.pk, tenant_id=t.pk)) for t in chosen]


class Traffic:
    """Steady reads and writes from CLIENTS threads; every outcome kept with its time."""

    def __init__(self, base_url: str, credentials: list[tuple[str, str]], rate: float):
        self.base_url, self.credentials, self.rate = base_url, credentials, rate
        self.samples: list[tuple[float, float, bool]] = []  # (at, seconds, ok)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def _client(self, index: int) -> None:
        session = requests.Session()
        interval = CLIENTS / self.rate
        next_at = time.monotonic() + index * interval / CLIENTS
        n = index
        while not self._stop.is_set():
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            host, token = self.credentials[n % len(self.credentials)]
            headers = {"Host": host, "Authorization": f"Bearer {token}"}
            started = time.monotonic()
            try:
                if n % 4 == 0:
                    response = session.post(f"{self.base_url}/api/v1/documents", headers=headers, timeout=30,
                                            json={"title": f"fleet write {n}", "body": "during a migration"})
                else:
                    response = session.get(f"{self.base_url}/api/v1/documents?page_size=5", headers=headers,
                                           timeout=30)
                ok = response.status_code < 400
            except requests.RequestException:
                ok = False
            self.samples.append((started, time.monotonic() - started, ok))
            n += CLIENTS

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=35)

    def window(self, start: float, end: float) -> str:
        inside = [(seconds, ok) for at, seconds, ok in list(self.samples) if start <= at <= end]
        failed = sum(1 for _, ok in inside if not ok)
        latencies = [seconds for seconds, _ in inside]
        return (f"{len(inside)} requests, {failed} failed, p50 {percentile(latencies, 50) * 1000:.0f} ms, "
                f"p99 {percentile(latencies, 99) * 1000:.0f} ms, max {max(latencies, default=0) * 1000:.0f} ms")


def run_migrate(env_overrides: dict[str, str]) -> tuple[float, float, float, str]:
    env = dict(os.environ, **env_overrides)
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--tenants-only"], env=env,
                            cwd=ROOT, capture_output=True, text=True)
    ended = time.monotonic()
    summary = [line for line in result.stdout.splitlines() if line.startswith("Tenant schemas")]
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit(f"migrate failed with exit code {result.returncode}")
    return started, ended, ended - started, summary[-1] if summary else ""


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    aliases = planes.shard_aliases()
    print(f"fleet migrate: {count} tenant schemas, traffic {rate:.0f} requests/s (1 write : 3 reads) "
          f"to {TRAFFIC_TENANTS} tenants through gunicorn (2 workers)")
    forget_migration_app(aliases, prefix="fleet_bench")  # a previous run's column and ledger rows
    fleet = ensure_fleet(count)
    credentials = traffic_credentials(fleet)
    with tempfile.TemporaryDirectory(prefix="fleet-migrate-") as directory, \
            Gunicorn(workers=2, env={"LOG_LEVEL": "WARNING"}) as server:
        app_env = write_migration_app(Path(directory), {
            "0001_bench_column": add_column("content_document", "fleet_bench_note"),
        }, base_settings=os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.local"))
        app_env["PYTHONPATH"] = os.pathsep.join([app_env["PYTHONPATH"], str(ROOT)])
        traffic = Traffic(server.url, credentials, rate).start()
        try:
            time.sleep(5)
            now = time.monotonic()
            print(f"  traffic alone (5 s):          {traffic.window(now - 5, now)}")
            for label, env in (("(a) no-op migrate", {}), ("(b) one-column migration", app_env)):
                start, end, seconds, summary = run_migrate(env)
                schemas = len(fleet)
                print(f"  {label:<29} {seconds:6.1f} s wall, {schemas / seconds:6.0f} schemas/s | {summary}")
                print(f"      traffic meanwhile:        {traffic.window(start, end)}")
                time.sleep(2)
        finally:
            traffic.stop()


if __name__ == "__main__":
    main()
