"""Caching under load (wrk against a real gunicorn).

    bin/dev bench load

The gunicorn defaults for every run; reads with the tenant cache on and off.
Load shedding, worker models and recycling: bench_shedding.py.
"""

import re
import shutil
import subprocess
import sys

from apps.accounts.models import User
from apps.accounts.tokens import issue_user_token
from apps.billing.models import Plan
from apps.content.models import Document
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.support import Gunicorn, seed_searchable_documents


def setup():
    public_tenant_ensure()
    shard_register_configured()
    tenant = Tenant.objects.filter(slug="bench-load").select_related("shard").first()
    if tenant is None:
        tenant = tenant_create(slug="bench-load", name="Bench Load", admin_email="load@bench.test",
                               admin_password="bench-password", plan="enterprise").tenant
    Plan.objects.filter(code="enterprise").update(rate_limit_per_minute=100_000_000)
    with tenant_activated(tenant):
        if Document.objects.count() < 5000:
            seed_searchable_documents(5000, words=300)
        doc_id = Document.objects.order_by("pk").values_list("pk", flat=True).first()
    owner = User.objects.get(email="load@bench.test")
    return tenant, doc_id, issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)


def wrk(url: str, token: str, *, connections: int, seconds: int, threads: int = 1, script: str | None = None) -> dict:
    """Closed-loop wrk; ``script`` is a Lua file (e.g. a delay() pacing the load)."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", "Host: bench-load.localhost",
         "-H", f"Authorization: Bearer {token}", *(["-s", script] if script else []), url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {p: re.search(rf"^\s+{p}%\s+(\S+)", out, re.MULTILINE).group(1) for p in ("50", "99")}
    worst = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.MULTILINE).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"], "max": worst,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "total": total}


def main():
    if not shutil.which("wrk"):
        sys.exit("needs wrk (apt-get install wrk)")
    tenant, doc_id, token = setup()
    base_env = {"LOG_LEVEL": "WARNING"}
    reads = {"document (primary key)": f"/api/v1/documents/{doc_id}",
             "list (filter + sort, 50 of 5,000)": "/api/v1/documents?ordering=title&q=doc&page_size=50",
             "usage (counts + rollups)": "/api/v1/usage"}
    print("1. reads, 8 connections, 10 s each, cache on vs off")
    for label, path in reads.items():
        for cache in ("0", "1"):
            with Gunicorn(workers=2, env={**base_env, "TENANT_CACHE_ENABLED": cache}) as server:
                wrk(f"{server.url}{path}", token, connections=8, seconds=2)  # warm up
                r = wrk(f"{server.url}{path}", token, connections=8, seconds=10)
            print(f"   {label:<36} cache {'on ' if cache == '1' else 'off'}: {r['rps']:7.0f} req/s  "
                  f"p50 {r['p50']:>8}  p99 {r['p99']:>8}")


if __name__ == "__main__":
    main()
