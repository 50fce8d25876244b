"""The request path against bare Django, side by side (wrk on loopback).

    bin/dev bench ratios [--tenants 1000] [--seconds 5] [--pairs 3]
    bin/dev bench ratios --profile | --profile-trivial   (in process, cProfile)

Starts three real gunicorns with the platform's worker model
(config/gunicorn.conf.py): the platform with its tenant cache, the platform
without it, and the bare single-file Django app (tests/benchmarks/bare/),
then drives them with wrk (C, one thread, 16 keep-alive connections: the
platform's 2 workers x 8 threads). Each round runs every measure once, bare
and platform runs interleaved; figures are medians of ``--pairs`` rounds and
each ratio is the median of the rounds' ratios, so a shared machine's drift
hits both sides alike.

Ratios printed (goal in brackets):
* trivial JSON view on a tenant host, all middleware / bare /json   (>= 0.7)
* uncached GET /api/v1/documents/<id> with an API key / bare /json  (>= 0.35)
                                                      / bare /db    (>= 0.6)
* the same read, cached / bare /json                                (>= 0.5)
* reads spread over N tenants vs over 10: p50 and p99               (within 10%)

Then the figures of other benchmarks that expose ``ratio() -> dict`` in
``tests/benchmarks/bench_<name>.py`` (EXTRA_RATIOS: ingest vs COPY, enqueue
vs kombu, fairness); a missing module is skipped, ``--no-extra`` skips all.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_create
from apps.billing.models import Plan
from apps.content.models import Document
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create
from tests.support import ROOT, Gunicorn, free_port, test_database_url

CONNECTIONS = 16
BARE_DIR = ROOT / "tests" / "benchmarks" / "bare"
KEY_NAME = "bench-ratios"
EXTRA_RATIOS = ["tests.benchmarks.bench_ingest", "tests.benchmarks.bench_enqueue", "tests.benchmarks.bench_fairness"]


@dataclass
class Row:
    """One printed ratio: what, the platform's figure, the yardstick's, the ratio and its goal."""

    label: str
    platform: str
    yardstick: str
    ratio: float
    goal: str
    best: float = 0.0  # best run against best run (the runs least disturbed by the machine)
    rounds: int = 0  # rounds the ratio is the median of


# --- fixtures -----------------------------------------------------------------


def _tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).select_related("shard").first()
    if tenant is None:
        # One shard, the control database's server: the bare app reads from
        # that server too.
        tenant = tenant_create(slug=slug, name=slug, admin_email=f"{slug}@bench.test", plan="enterprise",
                               shard="main").tenant
    return tenant


def _document(tenant: Tenant) -> int:
    with tenant_activated(tenant):
        doc = Document.objects.order_by("pk").first()
        if doc is None:
            doc = Document.objects.create(title=f"doc of {tenant.slug}", body="word " * 100, tags=["bench"])
        return doc.pk


def setup(tenants: int, key_name: str = KEY_NAME) -> dict:
    """The measured tenants (created once, kept in the bench database), a
    document and a fresh read-only API key each (named ``key_name``; the
    previous run's keys of that name are deleted)."""
    public_tenant_ensure()
    shard_register_configured()
    Plan.objects.filter(code="enterprise").update(rate_limit_per_minute=100_000_000)
    ApiKey.objects.filter(name=key_name).delete()
    targets = []
    started = time.monotonic()
    for i in range(tenants):
        if i and i % 100 == 0:
            print(f"   ... {i} of {tenants} tenants ready ({time.monotonic() - started:.0f} s)", flush=True)
        tenant = _tenant(f"rt-{i:04d}")
        key = api_key_create(tenant_id=tenant.pk, name=key_name, scopes=["read"], created_by=None).key
        host = tenant.domains.filter(is_primary=True).values_list("domain", flat=True).first()
        targets.append({"host": host, "key": key, "doc": _document(tenant)})
    return {"main": targets[0], "all": targets}


# --- load ---------------------------------------------------------------------

SPREAD_SCRIPT = """
targets = {%s}
n = 0
request = function()
  n = n %% #targets + 1
  local t = targets[n]
  return wrk.format("GET", t[1], {["Host"] = t[2], ["Authorization"] = "Bearer " .. t[3]})
end
"""


def spread_script(targets: list[dict]) -> str:
    rows = ",".join(f'{{"/api/v1/documents/{t["doc"]}", "{t["host"]}", "{t["key"]}"}}' for t in targets)
    path = Path(tempfile.mkstemp(prefix="bench-spread-", suffix=".lua")[1])
    path.write_text(SPREAD_SCRIPT % rows)
    return str(path)


def worker_cpu(master_pid: int) -> dict[int, float]:
    """CPU seconds used so far by each worker of a gunicorn master."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    except OSError:
        return used
    for pid in map(int, children):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return used


def wrk(url: str, *, seconds: int, headers: dict[str, str] | None = None, script: str | None = None,
        master_pid: int | None = None) -> dict:
    """One wrk run. With ``master_pid``, also how evenly its workers shared the
    work: ``balance`` is the least busy worker's CPU over the busiest's
    (gthread workers keep a connection on the worker that accepted it, and
    wrk opens its 16 at once, so some runs put nearly all on one worker and
    measure one process instead of two)."""
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    before = worker_cpu(master_pid) if master_pid else {}
    out = subprocess.run([*args, *(["-s", script] if script else []), url],
                         capture_output=True, text=True, check=True).stdout
    after = worker_cpu(master_pid) if master_pid else {}
    spent = [after[pid] - before.get(pid, 0.0) for pid in after]
    balance = (min(spent) / max(spent)) if len(spent) > 1 and max(spent) > 0 else 1.0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)),
            "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)),
            "errors": int(non2xx.group(1)) if non2xx else 0,
            "requests": int(re.search(r"(\d+) requests in", out).group(1)), "balance": balance}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


class Bare:
    """gunicorn serving the bare app with the platform's worker model."""

    def __init__(self, workers: int, threads: int, *, middleware: str = "none"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", str(threads),
                     "--worker-class", "gthread" if threads > 1 else "sync", "--keep-alive", "5",
                     "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
                     # A top-level module: importing it through tests.benchmarks
                     # would set the platform's Django up first.
                     "--chdir", str(BARE_DIR), "bare_app:application"]
        self.env = dict(os.environ, BARE_DATABASE_URL=test_database_url(), BARE_MIDDLEWARE=middleware,
                        DJANGO_SETTINGS_MODULE="")
        self.env.pop("DJANGO_SETTINGS_MODULE")

    def __enter__(self):
        subprocess.run([sys.executable, str(BARE_DIR / "bare_app.py"), "ensure-table"], env=self.env, cwd=BARE_DIR,
                       check=True)
        self.process = subprocess.Popen(self.args, env=self.env, cwd=BARE_DIR)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/db", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.process.kill()
        raise RuntimeError("the bare app did not answer within 30 s")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=15)


def worker_model() -> tuple[int, int]:
    import runpy

    conf = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    return conf["workers"], conf["threads"]


def measure(fixtures: dict, *, seconds: int, pairs: int) -> dict[str, list[dict]]:
    main, spread = fixtures["main"], fixtures["all"]
    auth = {"Host": main["host"], "Authorization": f"Bearer {main['key']}"}
    doc = f"/api/v1/documents/{main['doc']}"
    few, many = spread_script(spread[:10]), spread_script(spread)
    workers, threads = worker_model()
    quiet = {"LOG_LEVEL": "WARNING"}
    results: dict[str, list[dict]] = {}
    with Bare(workers, threads) as bare, Bare(workers, threads, middleware="django") as standard, \
            Gunicorn(workers=workers, env=quiet) as cached, \
            Gunicorn(workers=workers, env={**quiet, "TENANT_CACHE_ENABLED": "0"}) as uncached:
        runs = [
            ("bare /json", lambda s: wrk(f"{bare.url}/json", seconds=s, master_pid=bare.process.pid)),
            ("trivial view", lambda s: wrk(f"{cached.url}/", seconds=s, headers={"Host": main["host"]},
                                           master_pid=cached.process.pid)),
            ("bare /json, Django's standard middleware",
             lambda s: wrk(f"{standard.url}/json", seconds=s, master_pid=standard.process.pid)),
            ("bare /db", lambda s: wrk(f"{bare.url}/db", seconds=s, master_pid=bare.process.pid)),
            ("document, uncached", lambda s: wrk(uncached.url + doc, seconds=s, headers=auth,
                                                 master_pid=uncached.process.pid)),
            ("document, cached", lambda s: wrk(cached.url + doc, seconds=s, headers=auth, master_pid=cached.process.pid)),
            ("spread over 10 tenants", lambda s: wrk(cached.url + "/", seconds=s, script=few,
                                                     master_pid=cached.process.pid)),
            (f"spread over {len(spread)} tenants", lambda s: wrk(cached.url + "/", seconds=s, script=many,
                                                                 master_pid=cached.process.pid)),
        ]
        for _, run in runs:  # warm every process, connection and cache once
            run(1)
        # The spread reads compare steady states: every worker has seen every
        # tenant a few times (its host, key and plan held, its document
        # cached), as a server that has been up for a while has. Cold
        # first-visit costs are not what the tenant count is about.
        warmed, deadline = 0, time.monotonic() + 120
        while warmed < 6 * len(spread) and time.monotonic() < deadline:
            warmed += wrk(cached.url + "/", seconds=5, script=many)["requests"]
        print(f"   warmed the spread set: {warmed} requests over {len(spread)} tenants", flush=True)
        for round_no in range(1, pairs + 1):
            print(f"   round {round_no} of {pairs}", flush=True)
            for label, run in runs:
                result = run(seconds)
                results.setdefault(label, []).append(result)
                print(f"     {label:<42} {result['rps']:7.0f} req/s  p50 {result['p50']:6.1f} ms  "
                      f"p99 {result['p99']:6.1f} ms  non-2xx {result['errors']}  balance {result['balance']:.2f}", flush=True)
    for path in (few, many):
        Path(path).unlink(missing_ok=True)
    return results


def _median(runs: list[dict], field: str) -> float:
    return statistics.median(r[field] for r in runs)


BALANCED = 0.5  # a run counts when its least busy worker did at least half the busiest's work


def _ratio(results, label: str, yardstick: str, goal: str, field: str = "rps", invert: bool = False) -> Row:
    mine, theirs = results[label], results[yardstick]
    # Rounds where both runs spread their connections over both workers
    # (see ``wrk``); all rounds when none did.
    rounds = [(a, b) for a, b in zip(mine, theirs, strict=True)
              if min(a["balance"], b["balance"]) >= BALANCED] or list(zip(mine, theirs, strict=True))
    pairs = [(b[field] / a[field]) if invert else (a[field] / b[field]) for a, b in rounds]
    # Throughput: the highest run of each side; latency: the lowest. The
    # best runs are the least disturbed on both sides.
    pick = max if field == "rps" else min
    best = pick(r[field] for r in mine) / pick(r[field] for r in theirs)
    mine, theirs = [a for a, _ in rounds], [b for _, b in rounds]
    return Row(f"{label} vs {yardstick} ({field})", f"{_median(mine, field):.0f}" if field == "rps" else
               f"{_median(mine, field):.1f} ms", f"{_median(theirs, field):.0f}" if field == "rps" else
               f"{_median(theirs, field):.1f} ms", statistics.median(pairs), goal, best, len(rounds))


def rows(results: dict[str, list[dict]], tenants: int) -> list[Row]:
    spread = f"spread over {tenants} tenants"
    return [
        _ratio(results, "trivial view", "bare /json", ">= 0.7"),
        # How much of that gap is Django's own startproject middleware (not a goal; for the reading).
        _ratio(results, "bare /json, Django's standard middleware", "bare /json", "(reference)"),
        _ratio(results, "trivial view", "bare /json, Django's standard middleware", "(reference)"),
        _ratio(results, "document, uncached", "bare /json", ">= 0.35"),
        _ratio(results, "document, uncached", "bare /db", ">= 0.6"),
        _ratio(results, "document, cached", "bare /json", ">= 0.5"),
        # Latency ratios: over N tenants / over 10 (1.0 is the same; goal: at most 1.1).
        _ratio(results, spread, "spread over 10 tenants", "<= 1.1", field="p50"),
        _ratio(results, spread, "spread over 10 tenants", "<= 1.1", field="p99"),
    ]


def extra_ratios() -> None:
    """Print the figures of other benchmarks that offer ``ratio()`` (each
    returns a dict of its own shape; printed as it comes)."""
    for name in EXTRA_RATIOS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        if not hasattr(module, "ratio"):
            continue
        print(f"   {name.rsplit('.', 1)[-1].removeprefix('bench_')}:", flush=True)
        try:
            figures = module.ratio()
        except Exception as exc:  # another benchmark's failure must not hide these figures
            print(f"     failed: {type(exc).__name__}: {exc}")
            continue
        for key, value in (figures.items() if isinstance(figures, dict) else [("result", figures)]):
            shown = f"{value:.2f}" if isinstance(value, float) else value
            print(f"     {key}: {shown}")


# --- in-process profile -------------------------------------------------------


def profile(fixtures: dict, *, reads: int, cached: bool, top: int = 22) -> None:
    """Profile ``reads`` document reads in this process (cProfile, Django's
    test client, the full middleware) and count one read's SQL statements
    and Redis round trips."""
    import cProfile
    import pstats
    import threading
    from contextlib import ExitStack

    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings
    from redis.connection import AbstractConnection

    main = fixtures["main"]
    client = Client(HTTP_HOST=main["host"], HTTP_AUTHORIZATION=f"Bearer {main['key']}")
    path = f"/api/v1/documents/{main['doc']}"
    with override_settings(TENANT_CACHE_ENABLED=cached, LOG_LEVEL="WARNING"):
        for _ in range(50):
            assert client.get(path).status_code == 200
        trips, me, original = [], threading.get_ident(), AbstractConnection.send_packed_command

        def counting(self, command, check_health=True):
            if threading.get_ident() == me:
                trips.append(command)
            return original(self, command, check_health)

        AbstractConnection.send_packed_command = counting
        try:
            with ExitStack() as stack:
                captured = [stack.enter_context(CaptureQueriesContext(connections[a])) for a in settings.DATABASES]
                client.get(path)
        finally:
            AbstractConnection.send_packed_command = original
        statements = [q["sql"][:60] for c in captured for q in c.captured_queries]
        print(f"   one {'cached' if cached else 'uncached'} read: {len(statements)} SQL statements, "
              f"{len(trips)} Redis round trips")
        for sql in statements:
            print(f"     sql: {sql}")
        for command in trips:
            packed = b"".join(command) if isinstance(command, list) else command
            words = [w for w in packed.split(b"\r\n") if w and w[:1] not in (b"*", b"$")]
            print(f"     redis: {b' '.join(words)[:110].decode(errors='replace')}")
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(reads):
            client.get(path)
        profiler.disable()
        elapsed = time.perf_counter() - started
    print(f"   {reads} reads in process: {elapsed / reads * 1000:.2f} ms a read (under cProfile)")
    stats = pstats.Stats(profiler).stats
    print("   inclusive time per read by stage (ms, share of the read):")
    for label, stages in STAGES:
        cumulative = sum(ct for (path, _, name), (_, _, _, ct, _) in stats.items()
                         if any(path.endswith(file) and name == function for file, function in stages))
        if cumulative:
            print(f"     {cumulative / reads * 1000:7.3f} ms {cumulative / elapsed:4.0%}  {label}")


def profile_trivial(fixtures: dict, *, requests_: int, top: int = 25) -> None:
    """Profile the trivial JSON view on a tenant host in process (cProfile,
    Django's test client, the full middleware): milliseconds per request,
    then the functions with the most time of their own."""
    import cProfile
    import pstats

    from django.test import Client
    from django.test.utils import override_settings

    client = Client(HTTP_HOST=fixtures["main"]["host"])
    with override_settings(LOG_LEVEL="WARNING"):
        for _ in range(200):
            assert client.get("/").status_code == 200
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(requests_):
            client.get("/")
        profiler.disable()
        elapsed = time.perf_counter() - started
    print(f"   {requests_} trivial requests in process: {elapsed / requests_ * 1000:.3f} ms a request (under cProfile)")
    stats = pstats.Stats(profiler).stats
    middleware = sorted(((ct, path, line, name) for (path, line, name), (_, _, _, ct, _) in stats.items()
                         if "middleware" in path and name in ("__call__", "process_request", "process_response",
                                                              "process_view")), reverse=True)
    print("   middleware, inclusive ms per request:")
    for ct, path, line, name in middleware:
        print(f"     {ct / requests_ * 1000:7.3f}  {path.split('site-packages/')[-1].split('/main/')[-1]}:{line} {name}")
    print(f"   top {top} by own time (ms per request):")
    for (path, line, name), (_, calls, tt, _, _) in sorted(stats.items(), key=lambda i: -i[1][2])[:top]:
        print(f"     {tt / requests_ * 1000:7.3f}  {calls / requests_:5.1f} calls  "
              f"{path.split('site-packages/')[-1].split('/main/')[-1]}:{line} {name}")
    if os.environ.get("BENCH_CALLERS"):
        pstats.Stats(profiler).sort_stats("tottime").print_callers(os.environ["BENCH_CALLERS"])


# (label, [(file suffix, function)]): inclusive times summed; no stage
# nests a function of the same stage.
STAGES = [
    ("tenant middleware and all inside it", [("apps/tenancy/middleware.py", "__call__")]),
    ("tenant resolution (host -> tenant)", [("apps/tenancy/selectors.py", "tenant_for_hostname"),
                                            ("apps/tenancy/selectors.py", "resolve_host")]),
    ("authentication", [("apps/api/authentication.py", "authenticate")]),
    ("rate limit (throttle)", [("apps/ratelimit/throttles.py", "allow_request")]),
    ("view (cache path, query, output)", [("apps/content/apis.py", "get")]),
    ("  serializer / lean output", [("rest_framework/serializers.py", "data"),
                                     ("apps/content/apis.py", "document_data")]),
    ("rendering JSON", [("rest_framework/renderers.py", "render")]),
    ("SQL (execute_sql)", [("django/db/models/sql/compiler.py", "execute_sql")]),
    ("connection health checks", [("django/db/backends/base/base.py", "close_if_health_check_failed"),
                                  ("apps/tenancy/postgresql_backend/base.py", "close_if_health_check_failed")]),
    ("Redis I/O (send + read)", [("redis/connection.py", "send_packed_command"),
                                 ("redis/connection.py", "read_response")]),
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="bin/dev bench ratios")
    parser.add_argument("--tenants", type=int, default=1000, help="tenants of the spread read (default 1000)")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--pairs", type=int, default=3, help="rounds; figures are their medians (default 3)")
    parser.add_argument("--no-extra", action="store_true", help="skip other benchmarks' ratio() functions")
    parser.add_argument("--setup-only", action="store_true", help="make the fixtures (tenants) and stop")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the load runs: profile document reads in process, cached and uncached")
    parser.add_argument("--profile-trivial", action="store_true",
                        help="instead of the load runs: profile the trivial view in process (middleware cost)")
    options = parser.parse_args()
    if options.profile_trivial:
        profile_trivial(setup(1, key_name=f"{KEY_NAME}-profile"), requests_=2000)
        return
    if options.profile:
        fixtures = setup(1, key_name=f"{KEY_NAME}-profile")
        for cached in (False, True):
            profile(fixtures, reads=1000, cached=cached)
        return
    if not shutil.which("wrk"):
        sys.exit("bench ratios needs wrk (Debian: apt-get install wrk)")
    if options.tenants < 10 or options.pairs < 1 or options.seconds < 1:
        sys.exit("--tenants must be at least 10, --pairs and --seconds at least 1")
    print(f"1. fixtures: {options.tenants} tenants with a document and an API key each", flush=True)
    fixtures = setup(options.tenants)
    connection.close()
    if options.setup_only:
        return
    workers, threads = worker_model()
    print(f"2. load: wrk, 1 thread, {CONNECTIONS} connections, {options.seconds} s a run, {options.pairs} rounds; "
          f"gunicorn {workers} workers x {threads} threads on both sides; tenants on shard 'main' (the control "
          f"database's server, no replica)", flush=True)
    results = measure(fixtures, seconds=options.seconds, pairs=options.pairs)
    print("3. ratios (ratio: median over the rounds whose runs both spread over the workers, n of them;"
          " best: best run against best run)")
    print(f"   {'what':<76} {'platform':>10} {'yardstick':>10} {'ratio':>6} {'n':>2} {'best':>6}  goal")
    for row in rows(results, options.tenants):
        print(f"   {row.label:<76} {row.platform:>10} {row.yardstick:>10} {row.ratio:6.2f} {row.rounds:2d} {row.best:6.2f}  {row.goal}",
              flush=True)
    if not options.no_extra:
        print("4. other benchmarks' ratios (their ratio() functions)")
        extra_ratios()


if __name__ == "__main__":
    main()
