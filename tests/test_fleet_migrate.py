"""`manage.py migrate` across a fleet of tenant schemas while they are in use.

Thirty cloned tenant schemas on both shards; migrations that exist only for
these tests (a throwaway app on the subprocess's PYTHONPATH, tests/fleet.py)
add columns to the documents table that traffic uses.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.tenancy import planes
from apps.tenancy.models import MigrationRun, Tenant
from tests.fleet import add_column, clone_tenants, drop_tenants, forget_migration_app, write_migration_app
from tests.support import ROOT, committed_tenant, process_env
from tests.support import test_database_url as database_url
from tests.workers import wait_until

# pg_dump and manage.py processes, thirty schemas cloned per run: the live lane.
pytestmark = pytest.mark.live

PER_SHARD = 15


@pytest.fixture(scope="module")
def fleet(django_db_setup, django_db_blocker):
    """PER_SHARD tenant schemas on each shard: one provisioned, the rest cloned from it."""
    shards = ["main", "b"] if "shard_b" in planes.shard_aliases() else ["main"]
    with django_db_blocker.unblock():
        templates = [committed_tenant(f"fleet-{shard}-00", shard=shard) for shard in shards]
        made = [template.__enter__() for template in templates]
        clones = []
        for tenant, shard in zip(made, shards):
            clones += clone_tenants(tenant, [f"fleet-{shard}-{i:02d}" for i in range(1, PER_SHARD)])
        ids = [t.pk for t in made + clones]
        try:
            yield list(Tenant.objects.filter(pk__in=ids).select_related("shard").order_by("schema_name"))
        finally:
            forget_migration_app(planes.shard_aliases())
            drop_tenants(clones)
            for template in templates:
                template.__exit__(None, None, None)


@pytest.fixture
def forget_app(django_db_blocker):
    yield
    with django_db_blocker.unblock():
        forget_migration_app(planes.shard_aliases())


def migrate_process(app_env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--tenants-only", *args],
        env=process_env(**{**app_env, "PYTHONPATH": os.pathsep.join([app_env["PYTHONPATH"], str(ROOT)])},
                        PYTHONUNBUFFERED="1"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def columns(tenant, *names: str) -> set[str]:
    with psycopg.connect(database_url(tenant.shard.alias)) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'content_document' AND column_name = ANY(%s)", (tenant.schema_name, list(names)),
        ).fetchall()
    return {name for (name,) in rows}


def ledger(tenant) -> set[str]:
    with psycopg.connect(database_url(tenant.shard.alias)) as conn:
        rows = conn.execute(
            f"SELECT name FROM {tenant.schema_name}.django_migrations WHERE app = 'fleetcheck'"
        ).fetchall()
    return {name for (name,) in rows}


def test_a_schema_in_use_is_retried_after_lock_timeouts_and_traffic_never_waits_for_the_holder(
        fleet, forget_app, tmp_path):
    app_env = write_migration_app(tmp_path, {"0001_note": add_column("content_document", "fleet_note")},
                                  base_settings="config.settings.test")
    busy = fleet[3]
    url = database_url(busy.shard.alias)
    table = f"{busy.schema_name}.content_document"
    hold_seconds = 4.0
    latencies: list[float] = []
    errors: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        # Reads of the busy tenant's documents, as requests would make them.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '30s'")
            while not stop.is_set():
                started = time.monotonic()
                try:
                    conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                except psycopg.Error as exc:
                    errors.append(str(exc))
                latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    # A long transaction (an export, say) reads the table: ALTER TABLE must wait for it.
    reader = threading.Thread(target=traffic, daemon=True)
    try:
        with psycopg.connect(url) as holder:
            holder.execute(f"SELECT 1 FROM {table} LIMIT 1")
            reader.start()
            process = migrate_process(app_env, "--lock-timeout", "0.3", "--lock-retries", "30")
            time.sleep(hold_seconds)
            holder.rollback()
        output, _ = process.communicate(timeout=120)
    finally:
        stop.set()
    reader.join(timeout=30)

    assert process.returncode == 0, output
    assert f"{busy.schema_name}: lock not granted within 0.3s; rolled back, retry 1/30" in output
    assert f"{busy.schema_name} migrated in" in output and "retries" in output.split(f"{busy.schema_name} migrated")[1]
    assert "0 failed" in output
    assert all(columns(tenant, "fleet_note") == {"fleet_note"} for tenant in fleet)
    # No read failed, and none waited for the holder: each waited at most
    # one lock timeout behind the migration's lock request, then went on.
    assert errors == []
    assert max(latencies) < hold_seconds, sorted(latencies)[-5:]


def test_a_migrate_killed_mid_run_leaves_every_schema_whole_and_a_rerun_resumes(fleet, forget_app, tmp_path,
                                                                                 django_db_blocker):
    with django_db_blocker.unblock():
        killed_and_resumed(fleet, tmp_path)


def killed_and_resumed(fleet, tmp_path):
    app_env = write_migration_app(tmp_path, {
        "0001_first": add_column("content_document", "fleet_first"),
        # The second migration is slow, so the kill lands inside a schema's work.
        "0002_second": add_column("content_document", "fleet_second", sleep=0.3),
    }, base_settings="config.settings.test")
    process = migrate_process(app_env)
    seen = []
    for line in process.stdout:
        seen.append(line)
        # Other tenants of the session (the shared fixtures) migrate too; count the fleet's.
        if sum(" t_fleet_" in line and " migrated in " in line for line in seen) >= 4:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_run = MigrationRun.objects.order_by("-started_at").first()

    def killed_sessions_ended() -> bool:
        for alias in planes.shard_aliases():
            with psycopg.connect(database_url(alias), autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%' "
                                "AND pid <> pg_backend_pid()").fetchone():
                    return False
        return True

    wait_until(killed_sessions_ended, timeout=30, message="the killed run's sessions end")

    # All or nothing per schema: both migrations (and both columns) or neither.
    states = {tenant.schema_name: (ledger(tenant), columns(tenant, "fleet_first", "fleet_second")) for tenant in fleet}
    both = ({"0001_first", "0002_second"}, {"fleet_first", "fleet_second"})
    assert all(state in (both, (set(), set())) for state in states.values()), states
    done_before = [schema for schema, state in states.items() if state == both]
    assert 4 <= len(done_before) < len(fleet), "".join(seen)
    assert killed_run.finished_at is None and killed_run.status == MigrationRun.Status.RUNNING

    rerun = migrate_process(app_env)
    output, _ = rerun.communicate(timeout=180)

    assert rerun.returncode == 0, output
    assert re.search(r"Tenant schemas: \d+ up to date, \d+ migrated, 0 failed", output)
    assert not any(f"{schema} migrated" in output for schema in done_before)
    assert all(f"{t.schema_name} migrated" in output for t in fleet if t.schema_name not in done_before)
    # Progress per schema: done/total, rate, time left, failures.
    assert re.search(r"\] t_fleet_\w+ migrated in [\d.]+s \| \d+/\d+ \| [\d.]+ schemas/s, ETA \d+s, 0 failed", output)
    assert all(states == both for states in
               ((ledger(t), columns(t, "fleet_first", "fleet_second")) for t in fleet))
    run = MigrationRun.objects.order_by("-started_at").first()
    assert run.resumed_from_id == killed_run.pk and run.status == MigrationRun.Status.DONE
    migrated = int(re.search(r"(\d+) migrated, 0 failed", output).group(1))
    assert run.total("done") == migrated and run.total("failed") == 0
    assert run.total("total") >= len(fleet)
    assert killed_run.pk != run.pk


def test_bad_lock_settings_are_refused_with_a_message(django_db_blocker):
    with django_db_blocker.unblock(), pytest.raises(CommandError, match="--lock-timeout"):
        call_command("migrate", "--tenants-only", "--lock-timeout", "soon")
    with django_db_blocker.unblock(), pytest.raises(CommandError, match="--lock-retries"):
        call_command("migrate", "--tenants-only", "--lock-retries", "-1")


def test_a_concurrent_index_migration_runs_outside_the_schema_transaction(fleet, forget_app, tmp_path):
    app_env = write_migration_app(tmp_path, {
        "0001_column": add_column("content_document", "fleet_tag"),
        "0002_index": "migrations.RunSQL('CREATE INDEX CONCURRENTLY IF NOT EXISTS content_doc_fleet_tag "
                      "ON content_document (fleet_tag)', migrations.RunSQL.noop)",
    }, base_settings="config.settings.test", non_atomic=frozenset({"0002_index"}))
    process = migrate_process(app_env)
    output, _ = process.communicate(timeout=120)

    assert process.returncode == 0, output
    assert ", 0 failed" in output and all(f"{t.schema_name} migrated" in output for t in fleet)
    for tenant in fleet:
        assert ledger(tenant) == {"0001_column", "0002_index"}
        with psycopg.connect(database_url(tenant.shard.alias)) as conn:
            valid = conn.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                (tenant.schema_name, "content_doc_fleet_tag")).fetchone()
        assert valid == (True,)
