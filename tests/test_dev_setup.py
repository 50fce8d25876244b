"""`bin/dev setup` (the set-up half of `bin/dev up`) is safe to re-run;
`bin/dev up` says where to look once the platform is ready, `bin/dev manage`
runs commands in its environment and `bin/dev down` stops what it started.

Runs the real script as a developer would, on a control database of its own
and with a private Redis: the first run migrates and seeds the demo tenant, a
tenant is then placed on shard `b` (the second PostgreSQL server `bin/dev`
starts), and a second run on that state must finish cleanly without adding a
tenant, a user or a document. django-tenants' `migrate_schemas`, which knows
one database only, failed exactly there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests

from tests.support import ROOT, free_port
from tests.workers import RedisBroker, port_answers, wait_until

pytestmark = pytest.mark.live

# This run's own service variables would point the script at the suite's
# databases and queues; a developer's shell has none of them.
SUITE_VARIABLES = ("DATABASE_URL", "SHARD_URLS", "SHARD_REPLICA_URLS", "DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL")


def dev(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bin" / "dev"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def exported(output: str) -> dict[str, str]:
    """`bin/dev env` prints `export NAME="value"` lines."""
    names = {}
    for line in output.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            names[name] = json.loads(value)
    return names


def server_url(database_url: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path="/postgres"))


def control_state(database_url: str) -> dict[str, object]:
    with psycopg.connect(database_url) as conn:
        tenants = conn.execute(
            "SELECT t.slug, s.name FROM tenancy_tenant t LEFT JOIN tenancy_shard s ON s.id = t.shard_id ORDER BY t.slug"
        ).fetchall()
        users = conn.execute("SELECT email FROM accounts_user ORDER BY email").fetchall()
        memberships = conn.execute("SELECT count(*) FROM accounts_membership").fetchone()[0]
    return {"tenants": tenants, "users": [u for (u,) in users], "memberships": memberships}


def test_setup_runs_twice_on_the_same_state_with_a_tenant_on_the_second_shard():
    db_name = f"saas_devsetup_{uuid.uuid4().hex[:10]}"
    redis = RedisBroker().start()
    env = {name: value for name, value in os.environ.items() if name not in SUITE_VARIABLES}
    env.update(PLATFORM_DB_NAME=db_name, REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url, LOG_LEVEL="WARNING")
    urls: dict[str, str] = {}
    try:
        described = dev("env", env=env)
        assert described.returncode == 0, described.stderr
        urls = exported(described.stdout)
        assert "b=" in urls["SHARD_URLS"], urls
        # Everything below goes to this test's own databases, never the suite's.
        assert urlsplit(urls["DATABASE_URL"]).path == f"/{db_name}"

        first = dev("setup", env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        placed = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "create_tenant", "bee", "--name", "Bee",
             "--admin-email", "owner@bee.test", "--shard", "b"],
            env={**env, **urls, "DJANGO_SETTINGS_MODULE": "config.settings.local"},
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        assert placed.returncode == 0, placed.stdout + placed.stderr
        before = control_state(urls["DATABASE_URL"])
        assert ("bee", "b") in before["tenants"]

        second = dev("setup", env=env)

        assert second.returncode == 0, second.stdout + second.stderr
        assert "Traceback" not in second.stderr
        assert "documents added: 0" in second.stdout
        after = control_state(urls["DATABASE_URL"])
        assert after == before
        assert sorted(slug for slug, _ in after["tenants"]) == ["bee", "demo", "public"]

        # `bin/dev manage` runs a command against the same databases, shards included.
        listed = dev("manage", "list_tenants", env=env)
        assert listed.returncode == 0, listed.stderr
        bee = next(line.split() for line in listed.stdout.splitlines() if line.startswith("bee "))
        assert bee[:4] == ["bee", bee[1], "active", "b"]
    finally:
        drop_databases(db_name, urls)
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)


def drop_databases(db_name: str, urls: dict[str, str]) -> None:
    for url in {server_url(u) for u in [urls.get("DATABASE_URL", "")]
                + [item.partition("=")[2] for item in urls.get("SHARD_URLS", "").split(",")] if u}:
        # The replica of shard b follows its primary's DROP by streaming replication.
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        except psycopg.OperationalError:
            pass  # a private server already stopped by `down`


def shard_ports(urls: dict[str, str]) -> list[int]:
    every = [item.partition("=")[2] for item in urls["SHARD_URLS"].split(",")] + [
        item.partition("=")[2] for item in urls.get("SHARD_REPLICA_URLS", "").split(",") if item]
    return sorted({urlsplit(url).port for url in every} - {5432})


def test_up_prints_its_urls_when_ready_and_down_stops_only_what_it_started(tmp_path):
    """On a private .local (PLATFORM_LOCAL_DIR): the shared embedded shard
    servers other processes use, and the machine's own services, stay up."""
    db_name = f"saas_devup_{uuid.uuid4().hex[:10]}"
    local = tmp_path / "local"
    redis = RedisBroker().start()
    web_port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in SUITE_VARIABLES}
    env.update(PLATFORM_DB_NAME=db_name, PLATFORM_LOCAL_DIR=str(local), REDIS_URL=redis.url,
               CELERY_BROKER_URL=redis.url, LOG_LEVEL="WARNING", PORT=str(web_port), OPS_PORT=str(free_port()),
               EMAIL_PORT=str(free_port()), CELERY_METRICS_PORT=str(free_port()))
    machine_ports = [port for port in (5432, 6379, 5672) if port_answers(port)]
    shared_ports = [int(p.read_text()) for p in (ROOT / ".local").glob("*.port")]
    urls: dict[str, str] = {}
    up = None
    try:
        urls = exported(dev("env", env=env).stdout)
        private_ports = shard_ports(urls)
        assert private_ports and all(port_answers(port) for port in private_ports)
        assert not set(private_ports) & set(shared_ports)
        up = subprocess.Popen([sys.executable, str(ROOT / "bin" / "dev"), "up"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        table = []
        for line in up.stdout:
            if line.strip().startswith(("demo tenant", "API docs", "readiness")):
                table.append(line)
            if line.strip().startswith("readiness"):
                break
        assert [line.split()[0] for line in table] == ["demo", "API", "readiness"], table
        assert "/api/v1/docs" in table[1]
        # honcho's process output shares the pipe: keep draining it.
        threading.Thread(target=up.stdout.read, daemon=True).start()
        # Printed once ready: /readyz answers 200.
        assert requests.get(f"http://127.0.0.1:{web_port}/readyz", headers={"Host": "localhost"},
                            timeout=10).status_code == 200
        # Workers and beat serve /metrics where Prometheus' file discovery
        # (platform/prometheus/prometheus.yml) finds them.
        for job in ("saas-web", "saas-worker", "saas-beat"):
            for group in json.loads((local / "prometheus" / f"{job}.json").read_text()):
                port = int(group["targets"][0].rsplit(":", 1)[1])
                wait_until(lambda port=port: port_answers(port), timeout=30, message=f"{job} metrics on {port}")

        down = dev("down", env=env)

        assert down.returncode == 0, down.stderr
        assert "stopping web, workers and beat (honcho)" in down.stderr
        up.wait(timeout=30)
        assert not port_answers(web_port)
        wait_until(lambda: not any(port_answers(port) for port in private_ports), timeout=30,
                   message="the private shard servers stop")
        assert all(port_answers(port) for port in machine_ports + shared_ports)
        again = dev("down", env=env)
        assert again.returncode == 0 and "stopping" not in again.stderr
    finally:
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=30)
        dev("down", env=env)
        drop_databases(db_name, urls)
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)


def test_bench_without_a_name_prints_its_usage():
    result = dev("bench", env=dict(os.environ))
    assert result.returncode == 2
    assert result.stdout.startswith("usage: bin/dev bench NAME") and "fleet_migrate" in result.stdout
