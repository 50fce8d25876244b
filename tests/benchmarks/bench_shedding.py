"""Load shedding, worker model and recycling, measured (wrk against a real
gunicorn).

    bin/dev bench shedding [models|idle|overload|recycling ...]

1. models: a cached document read, 8 connections, on several worker models.
2. idle: one client with 8 keep-alive connections of ordinary reads of every
   priority on the defaults: how many were shed (should be none).
3. overload: 64 connections flooding search (low priority) while 2 read a
   document (critical), on the defaults; shedding on and off.
4. recycling: the document read paced at about 70% of the defaults'
   throughput for 60 s, workers recycled every ~5,000 requests (the old
   setting) and with the defaults; p99 and the restarts seen.
"""

import re
import runpy
import statistics
import sys
import tempfile
import threading

from tests.benchmarks.bench_load import setup, wrk
from tests.support import ROOT, Gunicorn

QUIET = {"LOG_LEVEL": "WARNING"}
# (label, workers, threads); 1 thread is gunicorn's sync worker.
MODELS = [("2 x 8 threads", 2, 8), ("4 x 2 threads", 4, 2), ("2 x 4 threads", 2, 4), ("4 sync", 4, 1)]


def defaults() -> tuple[int, int]:
    """Workers and threads as config/gunicorn.conf.py sets them here."""
    conf = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    return conf["workers"], conf["threads"]


def default_workers() -> int:
    return defaults()[0]


def models(doc_id: int, token: str, rounds: int = 3) -> dict:
    """Each model once per round, rounds interleaved: a shared machine's load
    drifts, and a model measured only early or late would be favoured."""
    print(f"1. worker models: cached document read, 8 connections, 10 s, {rounds} rounds")
    rates: dict[str, list[float]] = {label: [] for label, _, _ in MODELS}
    for _ in range(rounds):
        for label, workers, threads in MODELS:
            with Gunicorn(workers=workers, env={**QUIET, "GUNICORN_THREADS": str(threads)}) as server:
                wrk(f"{server.url}/api/v1/documents/{doc_id}", token, connections=8, seconds=2)  # warm up
                r = wrk(f"{server.url}/api/v1/documents/{doc_id}", token, connections=8, seconds=10)
            rates[label].append(r["rps"])
            print(f"   {label:<14} {r['rps']:6.0f} req/s  p50 {r['p50']:>8}  p99 {r['p99']:>8}  {r['non2xx']} non-2xx")
    medians = {label: statistics.median(values) for label, values in rates.items()}
    print("   medians: " + ", ".join(f"{label} {rate:.0f} req/s" for label, rate in medians.items()))
    return medians


MIX = """
paths = {%s}
n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
"""


def idle(doc_id: int, token: str) -> None:
    print("2. one client, 8 keep-alive connections, ordinary reads of every priority, 10 s, defaults")
    paths = ["/api/v1/me", "/api/v1/members", f"/api/v1/documents/{doc_id}", "/api/v1/documents?page_size=5",
             "/api/v1/search?q=alpha&limit=5", "/api/v1/usage"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(MIX % ", ".join(f'"{p}"' for p in paths))
        script.flush()
        with Gunicorn(workers=default_workers(), env=QUIET) as server:
            r = wrk(server.url, token, connections=8, seconds=10, script=script.name)
    print(f"   {r['total']} requests ({r['rps']:.0f} req/s), {r['non2xx']} not 2xx; p99 {r['p99']}")


def overload(doc_id: int, token: str) -> None:
    print("3. overload, defaults: 64 connections on /api/v1/search, 2 on a document read, 15 s")
    for shed in ("1", "0"):
        with Gunicorn(workers=default_workers(), env={**QUIET, "SHED_ENABLED": shed, "TENANT_CACHE_ENABLED": "0"}) as server:
            flood = {}
            flooder = threading.Thread(target=lambda: flood.update(
                wrk(f"{server.url}/api/v1/search?q=alpha%20beta%20-kappa&limit=50", token, connections=64,
                    seconds=15)))
            flooder.start()
            critical = wrk(f"{server.url}/api/v1/documents/{doc_id}", token, connections=2, seconds=12)
            flooder.join()
        print(f"   shedding {'on ' if shed == '1' else 'off'}: critical p50 {critical['p50']:>8} p99 {critical['p99']:>8} "
              f"({critical['rps']:.0f} req/s, {critical['non2xx']} errors); "
              f"search {flood['rps']:.0f} req/s, {flood['non2xx']} of {flood['total']} shed (503)")


# Each connection waits a random (exponential) time between requests: about
# Poisson arrivals at the given mean rate, not a closed loop at full speed.
PACED = """
math.randomseed(os.time())
delay = function()
  return -math.log(1 - math.random()) * %f
end
"""


def recycling(doc_id: int, token: str, full_rate: float) -> None:
    connections, seconds = 32, 60
    rate = 0.7 * full_rate
    print(f"4. recycling: document read paced at ~{rate:.0f} req/s (70% of {full_rate:.0f}), "
          f"{connections} connections, {seconds} s, defaults")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(PACED % (1000 * connections / rate))
        script.flush()
        for label, env in (("every ~5,000 requests", {"GUNICORN_MAX_REQUESTS": "5000",
                                                      "GUNICORN_MAX_REQUESTS_JITTER": "500"}),
                           ("defaults", {})):
            with Gunicorn(workers=default_workers(), env={**QUIET, "GUNICORN_LOG_LEVEL": "info", **env}) as server:
                wrk(f"{server.url}/api/v1/documents/{doc_id}", token, connections=8, seconds=2)  # warm up
                r = wrk(f"{server.url}/api/v1/documents/{doc_id}", token, connections=connections, seconds=seconds,
                        script=script.name)
                restarts = len(re.findall("Autorestarting worker", server.log_text()))
            print(f"   recycled {label:<22} {r['rps']:5.0f} req/s  p50 {r['p50']:>8}  p99 {r['p99']:>8}  max {r['max']:>8}  "
                  f"{restarts} worker restarts, {r['non2xx']} non-2xx")


def main():
    import shutil

    if not shutil.which("wrk"):
        sys.exit("needs wrk (apt-get install wrk)")
    parts = sys.argv[1:] or ["models", "idle", "overload", "recycling"]
    _, doc_id, token = setup()
    full_rate = None
    if "models" in parts:
        rates = models(doc_id, token)
        default = next((label for label, w, t in MODELS if (w, t) == defaults()), None)
        full_rate = rates.get(default)
    if "idle" in parts:
        idle(doc_id, token)
    if "overload" in parts:
        overload(doc_id, token)
    if "recycling" in parts:
        if full_rate is None:
            with Gunicorn(workers=default_workers(), env=QUIET) as server:
                wrk(f"{server.url}/api/v1/documents/{doc_id}", token, connections=8, seconds=2)
                full_rate = wrk(f"{server.url}/api/v1/documents/{doc_id}", token, connections=8, seconds=10)["rps"]
        recycling(doc_id, token, full_rate)


if __name__ == "__main__":
    main()
