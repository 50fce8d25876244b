"""`bin/dev setup` (the set-up half of `bin/dev up`) is safe to re-run.

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
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.support import ROOT
from tests.workers import RedisBroker

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
    finally:
        for url in {server_url(u) for u in [urls.get("DATABASE_URL", "")]
                    + [item.partition("=")[2] for item in urls.get("SHARD_URLS", "").split(",")] if u}:
            # The replica of shard b follows its primary's DROP by streaming replication.
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)
