"""HAProxy (platform/haproxy/haproxy.cfg) in front of real gunicorn instances.

Three instances of the platform on loopback (two stable, one canary) behind
a real HAProxy with the project's configuration, under a bounded load of
reads and writes from several clients:

* a graceful restart (drain on the runtime API, wait until idle, SIGTERM,
  start again, ready) loses no request;
* a SIGKILLed instance loses at most the writes in flight on it; reads are
  retried on another instance by HAProxy and all succeed;
* the canary receives its configured share of requests.

The figures are printed (pytest -s) and quoted in the README.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, Gunicorn, committed_tenant, free_port
from tests.workers import wait_until

pytestmark = [
    pytest.mark.live,
    pytest.mark.requires(shutil.which("haproxy"), reason="HAProxy is not installed (Debian package haproxy)"),
]

CONFIG = ROOT / "platform" / "haproxy" / "haproxy.cfg"
CANARY_PERCENT = 10
THREADS = 8


def gunicorn_on(port: int) -> Gunicorn:
    server = Gunicorn(workers=1, env={"GUNICORN_THREADS": str(THREADS), "GUNICORN_GRACEFUL_TIMEOUT": "10"})
    server.port, server.url = port, f"http://127.0.0.1:{port}"
    server.env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
    return server


class HAProxy:
    def __init__(self, web1: int, web2: int, canary: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="haproxy-"))
        self.socket = self.dir / "admin.sock"
        self.env = dict(os.environ, HAPROXY_BIND=f"127.0.0.1:{self.port}", HAPROXY_STATS_SOCKET=str(self.socket),
                        WEB1_ADDR=f"127.0.0.1:{web1}", WEB2_ADDR=f"127.0.0.1:{web2}",
                        CANARY_ADDR=f"127.0.0.1:{canary}", CANARY_PERCENT=str(CANARY_PERCENT),
                        SERVER_MAXCONN=str(int(THREADS * 0.75)))
        self.log = open(self.dir / "haproxy.log", "w")
        self.process = None

    def __enter__(self) -> HAProxy:
        check = subprocess.run(["haproxy", "-c", "-f", str(CONFIG)], env=self.env, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.process = subprocess.Popen(["haproxy", "-W", "-db", "-f", str(CONFIG)], env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.socket.exists(), 10, message="haproxy runtime API")
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {(r["pxname"], r["svname"]): r for r in rows}

    def up(self, backend: str, server: str) -> bool:
        return self.stats()[(backend, server)]["status"].startswith("UP")

    def set_state(self, server: str, state: str) -> None:
        for backend in ("web", "canary"):
            self.command(f"set server {backend}/{server} state {state}")

    def in_flight(self, server: str) -> int:
        stats = self.stats()
        return sum(int(stats[(backend, server)]["scur"] or 0) for backend in ("web", "canary"))


class Load:
    """Clients sending reads (GET) and writes (POST) until stopped."""

    def __init__(self, url: str, host: str, token: str, readers: int = 3, writers: int = 1):
        self.url, self.stop_event = url, threading.Event()
        self.headers = {"Host": host, "Authorization": f"Bearer {token}"}
        self.outcomes: Counter = Counter()
        self.failures: list[str] = []
        self.failed_started: list[tuple[str, float]] = []  # (method, time.monotonic() when it was sent)
        self.threads = [threading.Thread(target=self.run, args=("GET",)) for _ in range(readers)]
        self.threads += [threading.Thread(target=self.run, args=("POST",)) for _ in range(writers)]

    def run(self, method: str) -> None:
        session = requests.Session()
        n = 0
        while not self.stop_event.is_set():
            n += 1
            started = time.monotonic()
            try:
                if method == "GET":
                    response = session.get(f"{self.url}/api/v1/me", headers=self.headers, timeout=10)
                else:
                    response = session.post(f"{self.url}/api/v1/documents", json={"title": f"lb {n}"},
                                            headers=self.headers, timeout=10)
                ok = response.status_code in (200, 201)
                detail = f"{method} {response.status_code} {response.text[:100]}"
            except requests.RequestException as exc:
                ok, detail = False, f"{method} {type(exc).__name__}"
            self.outcomes[(method, ok)] += 1
            if not ok:
                self.failures.append(detail)
                self.failed_started.append((method, started))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(15)

    def count(self, method: str, ok: bool) -> int:
        return self.outcomes[(method, ok)]


def kill_tree(pid: int) -> None:
    """SIGKILL a gunicorn master and its workers at once."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for target in [pid, *map(int, children)]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_haproxy_drains_retries_and_splits_traffic(tenants, django_db_blocker):
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token
    from apps.billing.models import Plan

    ports = {name: free_port() for name in ("web1", "web2", "canary1")}
    figures = {}
    with django_db_blocker.unblock(), committed_tenant("balanced") as tenant:
        Plan.objects.filter(code="free").update(rate_limit_per_minute=1_000_000)
        try:
            owner = User.objects.get(email="owner@balanced.test")
            token = issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)
            host = "balanced.localhost"
            servers = {name: gunicorn_on(port).__enter__() for name, port in ports.items()}
            try:
                with HAProxy(ports["web1"], ports["web2"], ports["canary1"]) as haproxy:
                    wait_until(lambda: all(haproxy.up(b, s) for b, s in
                                           [("web", "web1"), ("web", "web2"), ("canary", "canary1")]),
                               30, message="all instances up in haproxy")
                    time.sleep(11)  # past slow start: weights are full

                    # 1. The canary's share.
                    served = Counter()
                    session = requests.Session()
                    for _ in range(1000):
                        response = session.get(f"{haproxy.url}/", headers={"Host": host}, timeout=10)
                        assert response.status_code == 200
                        served[response.headers["X-Served-By"]] += 1
                    figures["canary share %"] = 100 * served["canary1"] / sum(served.values())
                    assert abs(figures["canary share %"] - CANARY_PERCENT) < 3.5, served

                    # 2. A graceful restart of web1 under load: drain, wait, stop, start, ready.
                    with Load(haproxy.url, host, token) as load:
                        time.sleep(2)
                        haproxy.set_state("web1", "drain")
                        wait_until(lambda: haproxy.in_flight("web1") == 0, 15, message="web1 drained")
                        servers["web1"].__exit__()  # SIGTERM: gunicorn finishes what it has
                        servers["web1"] = gunicorn_on(ports["web1"]).__enter__()
                        haproxy.set_state("web1", "ready")
                        wait_until(lambda: haproxy.up("web", "web1"), 15, message="web1 back")
                        time.sleep(2)
                    figures["restart: requests"] = sum(load.outcomes.values())
                    figures["restart: lost"] = len(load.failures)
                    assert load.failures == [], load.failures[:10]
                    assert load.count("GET", True) > 50 and load.count("POST", True) > 10

                    # 3. web2 SIGKILLed under load: reads retried elsewhere (bar one being answered at the kill), writes in flight may fail.
                    # (First let web1 finish its slow start: until then HAProxy also
                    # ramps up how many requests it gives it.)
                    time.sleep(10)
                    with Load(haproxy.url, host, token) as load:
                        time.sleep(2)
                        killed_at = time.monotonic()
                        kill_tree(servers["web2"].process.pid)
                        wait_until(lambda: not haproxy.up("web", "web2"), 15, message="web2 marked down")
                        time.sleep(2)
                    figures["kill: requests"] = sum(load.outcomes.values())
                    figures["kill: lost reads"] = load.count("GET", False)
                    figures["kill: lost writes"] = load.count("POST", False)
                    # A read whose answer web2 had begun to send when it was killed
                    # arrives cut off (HAProxy has passed the headers on, so it can no
                    # longer retry it elsewhere); no read sent after the kill (as the writes:
                    # half a second for the killed processes to go) fails.
                    late_reads = [t - killed_at for m, t in load.failed_started if m == "GET" and t > killed_at + 0.5]
                    assert late_reads == [] and load.count("GET", False) <= 1, (load.failures[:10], late_reads)
                    # One writer: the write in flight at the kill may fail, and so may
                    # the next if it reached web2's listening socket while the killed
                    # processes were still being torn down (accepted, then reset: not
                    # retryable for a POST). No write sent after that fails.
                    late = [t - killed_at for m, t in load.failed_started if m == "POST" and t > killed_at + 0.5]
                    assert late == [] and load.count("POST", False) <= 2, (load.failures, late)
            finally:
                for server in servers.values():
                    server.__exit__()
        finally:
            Plan.objects.filter(code="free").update(rate_limit_per_minute=120)
    print("\nload balancer figures:", {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()})
