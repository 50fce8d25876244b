"""Moving a tenant between shards on real servers: no row lost, or no change."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connections
from django.test import Client
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.content.models import Document
from apps.content.services import document_create
from apps.fleet import copying, moves, verification
from apps.partitions.partitions import month_start
from apps.tenancy import schemas
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Move, Shard, Tenant
from tests.support import ROOT, command_output, committed_tenant, manage, process_env, temporary_shard
from tests.support import test_database_url as database_url
from tests.tools import require
from tests.workers import wait_until

TABLES = ["audit_entry", "content_document", "search_searchentry"]


def fill(tenant: Tenant, documents: int = 120) -> None:
    today = dt.date.today()
    with tenant_activated(tenant):
        for i in range(documents):
            document_create(title=f"doc {i}", body="x" * (i % 50), author_id=i)
        for offset in (-1, 0, 1):
            when = dt.datetime.combine(month_start(today, offset), dt.time(12), tzinfo=dt.UTC)
            AuditEntry.objects.create(actor_type="system", action="create", object_type="test.event",
                                      object_id=str(offset), occurred_at=when)
        Document.objects.filter(title="doc 3").delete()  # a gap in the ids


def fingerprints(tenant: Tenant) -> dict:
    tenant.refresh_from_db()
    return {t: verification.table_fingerprint(tenant.shard.alias, tenant.schema_name, t) for t in TABLES}


def other_shard_name(tenant: Tenant) -> str:
    return "b" if tenant.shard.name == "main" and Shard.objects.filter(name="b").exists() else "main"


def test_move_preserves_every_row_and_checksum(tenants, django_db_blocker):
    with django_db_blocker.unblock(), committed_tenant("mover") as tenant:
        fill(tenant)
        before = fingerprints(tenant)
        source = tenant.shard
        target = Shard.objects.get(name=other_shard_name(tenant))
        require(target != source, "needs two shards")
        out = StringIO()
        call_command("move_tenant", "mover", target.name, stdout=out)
        assert "writes frozen" in out.getvalue()
        tenant.refresh_from_db()
        assert tenant.shard == target and not tenant.writes_frozen
        assert fingerprints(tenant) == before
        assert before["content_document"][0] == 119 and before["audit_entry"][0] == 3 + 120
        assert not schemas.schema_exists(source.alias, "t_mover")
        assert not [s for s in schemas.existing_schemas(source.alias, ["t_mover"])]
        with tenant_activated(Tenant.objects.select_related("shard").get(pk=tenant.pk)):
            newest = max(Document.objects.values_list("id", flat=True))
            created = document_create(title="after the move")  # identity sequence carried over
            assert created.pk > newest
            month = dt.datetime.combine(month_start(dt.date.today()), dt.time(0), tzinfo=dt.UTC)
            assert AuditEntry.objects.filter(occurred_at__gte=month, object_type="test.event").count() == 2


def test_a_copy_killed_midway_leaves_the_tenant_on_its_source(tenants, django_db_blocker, monkeypatch):
    with django_db_blocker.unblock(), committed_tenant("crashy") as tenant:
        fill(tenant, documents=30)
        before = fingerprints(tenant)
        source = tenant.shard
        target = Shard.objects.get(name=other_shard_name(tenant))
        copied = []
        real_copy = copying._copy_table

        def copy_then_die(src, dst, schema, table, columns):
            if copied:
                raise OperationalError("copy process killed")
            copied.append(table)
            return real_copy(src, dst, schema, table, columns)

        monkeypatch.setattr(copying, "_copy_table", copy_then_die)
        with pytest.raises(CommandError, match="stays on its source shard"):
            call_command("move_tenant", "crashy", target.name, stdout=StringIO())
        tenant.refresh_from_db()
        assert tenant.shard == source and not tenant.writes_frozen
        assert fingerprints(tenant) == before
        assert not schemas.schema_exists(target.alias, "t_crashy")
        client = Client(HTTP_HOST="crashy.localhost")
        client.post("/admin/login/?next=/admin/", {"username": "owner@crashy.test", "password": "crashy-pass"})
        assert client.post("/admin/content/document/add/", {"title": "still writable", "status": "draft"}).status_code == 302


@pytest.mark.live
def test_target_server_stopped_mid_move_leaves_the_tenant_intact(tenants, django_db_blocker, monkeypatch):
    with django_db_blocker.unblock(), temporary_shard("target") as (server, target):
        with committed_tenant("stranded") as tenant:
            fill(tenant, documents=20)
            before = fingerprints(tenant)
            real_copy = copying._copy_table

            def stop_target_then_copy(*args):
                server.stop()
                return real_copy(*args)

            monkeypatch.setattr(copying, "_copy_table", stop_target_then_copy)
            with pytest.raises(OperationalError):
                moves.tenant_move(tenant=tenant, target=target)
            tenant.refresh_from_db()
            assert tenant.shard.name == "main" and not tenant.writes_frozen
            assert fingerprints(tenant) == before
            # With the target back, a new attempt clears the leftover and succeeds.
            server.start()
            monkeypatch.setattr(copying, "_copy_table", real_copy)
            moves.tenant_move(tenant=tenant, target=target)
            tenant.refresh_from_db()
            assert tenant.shard == target
            assert fingerprints(tenant) == before


def test_during_a_move_writes_get_503_and_reads_go_on(tenants, django_db_blocker):
    with django_db_blocker.unblock(), committed_tenant("busy") as tenant:
        fill(tenant, documents=5)
        target = Shard.objects.get(name=other_shard_name(tenant))
        client = Client(HTTP_HOST="busy.localhost")
        client.post("/admin/login/?next=/admin/", {"username": "owner@busy.test", "password": "busy-pass"})
        seen = {}

        def probe():
            write = client.post("/admin/content/document/add/", {"title": "during the move", "status": "draft"})
            seen["write"] = (write.status_code, write.get("Retry-After"))
            seen["read"] = client.get("/admin/content/document/").status_code

        moves.tenant_move(tenant=tenant, target=target, before_flip=probe)
        assert seen["write"][0] == 503 and int(seen["write"][1]) > 0
        assert seen["read"] == 200
        assert client.post("/admin/content/document/add/", {"title": "after the move", "status": "draft"}).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "main"], "No tenant with slug 'nobody'"),
        (["alpha", "atlantis"], "No shard named 'atlantis'"),
        (["alpha", "main"], "already on shard 'main'"),
    ],
)
def test_move_command_rejects_bad_input(tenants, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("move_tenant", *args, stdout=StringIO())


@pytest.mark.django_db
def test_move_to_a_read_only_shard_is_refused(tenants):
    Shard.objects.exclude(name="main").update(state=Shard.State.READ_ONLY)
    target = Shard.objects.exclude(name="main").first()
    require(target is not None, "needs two shards")
    with pytest.raises(CommandError, match="takes no tenants"):
        call_command("move_tenant", "alpha", target.name, stdout=StringIO())
    assert Tenant.objects.get(slug="alpha").shard.name == "main"


# --- the mover as a process (the kill drills under HTTP load: tests/test_online_moves.py) ---

# The mover's lease in the subprocess: a killed mover's freeze lapses within it.
LEASE_SECONDS = 3


class Mover:
    """``manage.py move_tenant`` as a real process (output in a file)."""

    def __init__(self, *args: str, **env: str):
        self.log = tempfile.NamedTemporaryFile(prefix="mover-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "move_tenant", *args], cwd=ROOT, stdout=self.log,
            stderr=subprocess.STDOUT,
            env=process_env(**{"MOVE_LEASE_SECONDS": str(LEASE_SECONDS), "MOVE_DRAIN_SECONDS": "1", **env}))

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> float:
        self.process.kill()
        self.process.wait(timeout=10)
        return time.monotonic()

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def waiting_statements(alias: str, prefix: str) -> int:
    with psycopg.connect(database_url(alias), autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE %s", [prefix + "%"]).fetchone()[0]


def test_the_table_lock_gives_way_to_a_client_transaction_instead_of_deadlocking(tenants, django_db_blocker,
                                                                                   settings):
    settings.MOVE_DRAIN_SECONDS = 0
    with django_db_blocker.unblock(), committed_tenant("locky") as tenant:
        source, target = tenant.shard, Shard.objects.get(name=other_shard_name(tenant))
        require(target != source, "needs two shards")
        outcome = {}

        def move():
            try:
                outcome["report"] = moves.tenant_move(tenant=tenant, target=target)
            except Exception as exc:  # noqa: BLE001 (asserted below)
                outcome["error"] = exc
            finally:
                connections.close_all()

        with psycopg.connect(database_url(source.alias)) as client:
            # A client transaction that wrote one table and is about to write another, which the
            # mover (locking tables in name order) holds while it waits for the first.
            client.execute("LOCK TABLE t_locky.search_searchentry IN ROW EXCLUSIVE MODE")
            mover = threading.Thread(target=move)
            mover.start()
            wait_until(lambda: waiting_statements(source.alias, "LOCK TABLE"), 20, interval=0.02,
                       message="mover waiting for the client's table")
            client.execute("LOCK TABLE t_locky.content_document IN ROW EXCLUSIVE MODE")  # no deadlock error
            client.commit()
            mover.join(timeout=30)
        assert "error" not in outcome, outcome
        assert outcome["report"].lock_attempts >= 2
        tenant.refresh_from_db()
        assert tenant.shard == target


def test_verification_finds_a_difference_range_by_range(tenants, django_db_blocker, settings):
    settings.MOVE_VERIFY_RANGE_ROWS = 10
    with django_db_blocker.unblock(), committed_tenant("ranges") as tenant:
        fill(tenant, documents=45)
        alias = tenant.shard.alias
        ranges = list(verification.range_checksums(alias, "t_ranges", "content_document"))
        assert [r[0] for r in ranges] == [0, 1, 2, 3, 4] and sum(r[1] for r in ranges) == 44
        with connections[alias].cursor() as cursor:
            cursor.execute("CREATE SCHEMA t_ranges_copy")
            cursor.execute("CREATE TABLE t_ranges_copy.content_document AS TABLE t_ranges.content_document")
            cursor.execute("ALTER TABLE t_ranges_copy.content_document ADD PRIMARY KEY (id)")
        try:
            copied = verification.verify_table(alias, alias, "t_ranges", "content_document")
            assert copied.rows == 44
            with connections[alias].cursor() as cursor:
                cursor.execute("UPDATE t_ranges_copy.content_document SET title = 'changed' WHERE id = "
                               "(SELECT max(id) FROM t_ranges_copy.content_document)")
            original = list(verification.range_checksums(alias, "t_ranges", "content_document"))
            changed = list(verification.range_checksums(alias, "t_ranges_copy", "content_document"))
            assert [a[0] for a, b in zip(original, changed, strict=True) if a != b] == [4]
        finally:
            schemas.drop_schema(alias, "t_ranges_copy")


def test_orphans_are_listed_and_dropped_only_after_the_grace_period_with_yes(tenants, django_db_blocker):
    with django_db_blocker.unblock():
        alias = Shard.objects.get(name="main").alias
        schemas.create_schema(alias, "t_nobody_left")
        try:
            listed = command_output("shard_orphans")
            assert "t_nobody_left" in listed and "no tenant has this schema" in listed
            assert "t_alpha " not in listed  # placed there by the registry
            with pytest.raises(CommandError, match="--yes"):
                command_output("shard_orphans", "--drop")
            assert "dropped 0" in command_output("shard_orphans", "--drop", "--yes")  # inside the grace period
            assert schemas.schema_exists(alias, "t_nobody_left")
            assert "dropped 1" in command_output("shard_orphans", "--drop", "--yes", "--grace-hours", "0")
            assert not schemas.schema_exists(alias, "t_nobody_left")
        finally:
            schemas.drop_schema(alias, "t_nobody_left")


def test_rebalance_executes_its_plan_one_bounded_run_at_a_time(tenants, django_db_blocker, settings):
    from apps.tenancy.placement import rebalance_plan

    settings.MOVE_DRAIN_SECONDS = 0
    with django_db_blocker.unblock(), committed_tenant("newcomer") as tenant:
        plan = rebalance_plan()
        require(plan and plan[0][0] == "newcomer",
                f"needs two shards with the newcomer as the first planned move, got {plan}")
        target = plan[0][2]
        out = command_output("rebalance_shards", "--execute", "--max-moves", "1")
        assert "[1/1] moving newcomer" in out and f"newcomer on {target}" in out and "1 move(s) made" in out
        tenant.refresh_from_db()
        assert tenant.shard.name == target
        assert Move.objects.get(tenant=tenant).phase == Move.Phase.DONE
        if not rebalance_plan():
            assert "0 move(s) made; 0 left" in command_output("rebalance_shards", "--execute")


@pytest.mark.live
def test_a_task_meeting_a_frozen_tenant_waits_for_the_lease_and_never_becomes_a_dead_letter(tenants,
                                                                                             django_db_blocker):
    """Frozen for longer than a busy tenant's retry budget (12 attempts): the
    task keeps retrying, at most until the lease's deadline each time, writes
    nothing while frozen, and runs once the lease lapses."""
    from apps.jobs.models import DeadLetter
    from apps.search.models import SearchEntry
    from apps.search.tasks import index_documents
    from tests.workers import CeleryWorker, live_broker

    with live_broker("redis") as broker, django_db_blocker.unblock(), committed_tenant("frosty") as tenant:
        worker = CeleryWorker(broker_url=broker["url"], queues="search", name="frosty").start()
        renewing = threading.Event()
        renewing.set()

        def live_mover_lease():  # what a live mover's heartbeat does: a short lease, renewed
            try:
                while renewing.is_set():
                    Tenant.objects.filter(pk=tenant.pk).update(
                        writes_frozen_until=timezone.now() + dt.timedelta(seconds=1.5))
                    time.sleep(0.5)
            finally:
                connections.close_all()

        lease = threading.Thread(target=live_mover_lease, daemon=True)
        try:
            with tenant_activated(tenant):
                document = document_create(title="frozen while indexed")
                SearchEntry.objects.all().delete()
            lease.start()
            wait_until(lambda: Tenant.objects.get(pk=tenant.pk).writes_frozen, 5, message="frozen")
            with tenant_activated(tenant):
                index_documents.delay([document.pk])
                wait_until(lambda: '"attempt": 14' in worker.log_text(), 50, interval=0.5,
                           message="more retries than a busy tenant's budget")
                assert not SearchEntry.objects.filter(document_id=document.pk).exists()
                renewing.clear()
                lease.join(timeout=5)
                wait_until(lambda: SearchEntry.objects.filter(document_id=document.pk).exists(), 20,
                           message="indexed once the lease lapsed")
            assert not DeadLetter.objects.filter(tenant_slug="frosty").exists()
        finally:
            renewing.clear()
            worker.stop()


# --- placement ---------------------------------------------------------------------


def test_placement_policy_weighs_capacity_against_tenant_count_and_size():
    from apps.tenancy.placement import ShardLoad, headroom

    def load(name, weight, tenants, size):
        return ShardLoad(Shard(name=name, weight=weight), tenants, size)

    def best(*loads):
        return max(loads, key=lambda item: headroom(item, list(loads))).shard.name

    # The case: one seed tenant on b, none on main: the next goes to main.
    assert best(load("b", 100, 1, 50_000_000), load("main", 100, 0, 0)) == "main"
    # Equal counts: the shard with less data has more headroom.
    assert best(load("a", 100, 10, 9_000_000_000), load("c", 100, 10, 1_000_000_000)) == "c"
    # Weight 300 against 100: the big shard takes new tenants until it holds about three times as much.
    assert best(load("big", 300, 20, 2_000), load("small", 100, 10, 1_000)) == "big"
    assert best(load("big", 300, 40, 4_000), load("small", 100, 10, 1_000)) == "small"
    # A few huge tenants on one shard: the other gets newcomers although it has more tenants.
    assert best(load("huge", 100, 3, 90_000_000_000), load("many", 100, 6, 1_000_000_000)) == "many"


@pytest.mark.django_db
def test_a_new_tenant_goes_to_the_shard_with_the_most_headroom(tenants):
    from apps.tenancy.services import shard_choose

    require(Shard.objects.filter(name="b").exists(), "needs two shards")
    # alpha and gamma on main, beta on b: b has the headroom.
    assert shard_choose().name == "b"
    Shard.objects.filter(name="b").update(weight=0)  # takes no new tenants
    assert shard_choose().name == "main"
    Shard.objects.filter(name="b").update(weight=100)
    Shard.objects.filter(name="main").update(weight=1000)
    assert shard_choose().name == "main"


# --- commands and a frozen tenant --------------------------------------------------


@contextmanager
def frozen_for(tenant: Tenant, seconds: float):
    Tenant.objects.filter(pk=tenant.pk).update(writes_frozen_until=timezone.now() + dt.timedelta(seconds=seconds))
    try:
        yield
    finally:
        Tenant.objects.filter(pk=tenant.pk).update(writes_frozen_until=None)


WRITE_A_DOCUMENT = "from apps.content.services import document_create; document_create(title='written by a command')"


def written_by_command(tenant: Tenant) -> int:
    with tenant_activated(Tenant.objects.select_related("shard").get(pk=tenant.pk)):
        return Document.objects.filter(title="written by a command").count()


@pytest.mark.live
def test_tenant_command_refuses_a_frozen_tenant_or_waits_for_it(tenants, django_db_blocker):
    with django_db_blocker.unblock(), committed_tenant("icy") as tenant:
        with frozen_for(tenant, 30):
            refused = manage("tenant_command", "--tenant", "icy", "shell", "-c", WRITE_A_DOCUMENT, timeout=60)
            assert refused.returncode != 0
            assert "does not accept writes now" in refused.stderr and "nothing was written" in refused.stderr
            assert "--wait" in refused.stderr, refused.stderr
            assert written_by_command(tenant) == 0
        with frozen_for(tenant, 2):  # the lease lapses while the command waits
            waited = manage("tenant_command", "--tenant", "icy", "--wait", "20", "shell", "-c", WRITE_A_DOCUMENT,
                            timeout=60)
            assert waited.returncode == 0, waited.stderr
            assert "waiting up to 20s" in waited.stdout
        assert written_by_command(tenant) == 1
        # --all: the frozen tenant is refused and reported; the exit is non-zero.
        with frozen_for(tenant, 30), pytest.raises(CommandError, match="tenant\\(s\\) failed"):
            call_command("tenant_command", "--all", "check", stdout=StringIO(), stderr=StringIO())
        with pytest.raises(CommandError, match="--wait must be"):
            call_command("tenant_command", "--tenant", "icy", "--wait", "-1", "check", stdout=StringIO())


def test_search_rebuild_refuses_a_frozen_tenant_and_writes_nothing(tenants, django_db_blocker):
    from apps.search.models import IndexRebuild, SearchEntry

    with django_db_blocker.unblock(), committed_tenant("sleet") as tenant:
        fill(tenant, documents=5)
        with tenant_activated(tenant):
            SearchEntry.objects.all().delete()
        with frozen_for(tenant, 30):
            with pytest.raises(CommandError, match="does not accept writes now.*Re-run"):
                call_command("rebuild_search_index", "--tenant", "sleet", stdout=StringIO())
        with tenant_activated(tenant):
            assert not SearchEntry.objects.exists() and not IndexRebuild.objects.exists()
        out = StringIO()
        call_command("rebuild_search_index", "--tenant", "sleet", stdout=out)
        with tenant_activated(tenant):
            assert SearchEntry.objects.count() == 4


@pytest.mark.django_db
def test_move_start_validates_and_records_before_queueing(tenants):
    from django.core.exceptions import ValidationError

    from apps.fleet.selectors import move_progress
    from apps.fleet.services import move_start

    alpha = tenants["alpha"]
    with pytest.raises(ValidationError, match="already on shard"):
        move_start(tenant=alpha, target=alpha.shard, actor="ops", reason="test")
    other = Shard.objects.exclude(pk=alpha.shard_id).first()
    require(other is not None, "needs two shards")
    with pytest.raises(ValidationError, match="Say why"):
        move_start(tenant=alpha, target=other, actor="ops", reason=" ")
    assert not Move.objects.filter(tenant=alpha).exists()
    move = Move(tenant=alpha, source=alpha.shard, target=other, phase=Move.Phase.COPY, rows_total=1000,
                bytes_total=4_000_000, bytes_copied=1_000_000, rows_copied=250,
                started_at=timezone.now() - dt.timedelta(seconds=10), heartbeat_at=timezone.now())
    progress = move_progress(move)
    assert progress["percent"] == 25.0 and 25 <= progress["eta_seconds"] <= 35 and not progress["finished"]
