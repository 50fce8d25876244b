"""Tenant moves under live HTTP traffic, with the mover SIGKILLed in every phase.

One tenant, one real gunicorn and one writer loop (>= 20 writes/s over HTTP)
for the whole module; the tenant goes back and forth between shard `b`
(wal_level=logical: the online path) and shard `main` (the locked path).
After every drill: no acknowledged write is lost, the freeze ended by the
lease, nothing is left on either server (schema, slot, publication,
subscription) that nobody reports, and the move was finished by a resume.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import requests
from django.db import connections
from django.utils import timezone

from apps.content.models import Document
from apps.fleet import logical, moves, orphans
from apps.fleet.records import MoveInProgress
from apps.fleet.selectors import move_progress, moves_in_progress
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Move, Shard, Tenant
from tests.support import Gunicorn, command_output, committed_tenant, manage
from tests.test_tenant_moves import LEASE_SECONDS, Mover, fill
from tests.tools import require
from tests.workers import wait_until

pytestmark = pytest.mark.live

SLUG = "drill"
PROGRESS_KEYS = {"phase", "path", "rows_copied", "rows_total", "bytes_copied", "bytes_total", "percent",
                 "eta_seconds", "freeze_seconds", "error", "finished", "started_at", "heartbeat_at"}


class HttpWriter:
    """Four threads POSTing documents to a real gunicorn, up to 48 a second
    together; keeps what was acknowledged (201) and what was refused."""

    THREADS, PER_THREAD_RATE = 4, 12

    def __init__(self, url: str, tenant: Tenant, token: str):
        self.url = url + "/api/v1/documents"
        self.headers = {"Host": f"{tenant.slug}.localhost", "Authorization": f"Bearer {token}"}
        self.acked: list[tuple[str, float]] = []
        self.refused: list[tuple[int, float]] = []
        self.halt = threading.Event()
        self.attempts = 0
        self.threads = [threading.Thread(target=self._loop, args=(n,), daemon=True) for n in range(self.THREADS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _loop(self, lane: int) -> None:
        session = requests.Session()
        session.headers.update(self.headers)
        number = 0
        while not self.halt.is_set():
            number += 1
            title, began = f"h{lane}-{number}", time.monotonic()
            try:
                code = session.post(self.url, json={"title": title}, timeout=10).status_code
            except requests.RequestException:
                code = 0
            if code == 201:
                self.acked.append((title, time.monotonic()))
            else:
                self.refused.append((code, time.monotonic()))
            self.attempts += 1
            time.sleep(max(0.0, 1 / self.PER_THREAD_RATE - (time.monotonic() - began)))

    def rate_since(self, started: float, attempts: int) -> float:
        return (self.attempts - attempts) / max(time.monotonic() - started, 1e-9)

    def refused_since(self, moment: float) -> dict[int, int]:
        codes: dict[int, int] = {}
        for code, at in self.refused:
            if at > moment:
                codes[code] = codes.get(code, 0) + 1
        return codes

    def acked_after(self, moment: float) -> bool:
        return any(at > moment for _, at in self.acked)

    def stop(self) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(timeout=15)


@pytest.fixture(scope="module")
def drill(tenants, django_db_blocker):
    """(tenant, writer): a committed tenant on shard b, written to over HTTP all module long."""
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token
    from apps.billing.models import Plan

    with django_db_blocker.unblock():
        require(Shard.objects.filter(name="b").exists(), "needs shard b (bin/dev starts it with wal_level=logical)")
        require(logical.wal_level(Shard.objects.get(name="b").alias) == "logical",
                "shard b's server does not run with wal_level=logical")
        with committed_tenant(SLUG, shard="b") as tenant:
            fill(tenant, documents=200)
            limits = Plan.objects.filter(pk=tenant.plan_id).values("rate_limit_per_minute", "max_documents").get()
            Plan.objects.filter(pk=tenant.plan_id).update(rate_limit_per_minute=1_000_000, max_documents=1_000_000)
            owner = User.objects.get(email=f"owner@{SLUG}.test")
            token = issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)
            try:
                with Gunicorn(workers=2) as server:
                    writer = HttpWriter(server.url, tenant, token)
                    writer.start()
                    try:
                        wait_until(lambda: len(writer.acked) >= 5, 30, interval=0.05, message="writes acknowledged")
                        yield tenant, writer
                    finally:
                        writer.stop()
                assert_no_acknowledged_write_lost(tenant, writer)
            finally:
                Plan.objects.filter(pk=tenant.plan_id).update(**limits)
                for move in Move.objects.filter(tenant=tenant, finished_at__isnull=True):
                    moves.move_abort(move=move)  # never leave a slot behind on a shared server
                orphans.replication_orphans_drop()


def fresh(tenant: Tenant) -> Tenant:
    return Tenant.objects.select_related("shard").get(pk=tenant.pk)


def assert_no_acknowledged_write_lost(tenant: Tenant, writer: HttpWriter) -> None:
    titles = {title for title, _ in writer.acked}
    with tenant_activated(fresh(tenant)):
        stored = set(Document.objects.filter(title__in=titles).values_list("title", flat=True))
    assert not titles - stored, f"acknowledged but lost: {sorted(titles - stored)[:10]}"


def replication_objects() -> list:
    return [item for shard in Shard.objects.all() for item in logical.leftovers(shard.alias)]


def assert_nothing_left(tenant: Tenant) -> None:
    """No replication object and no copy of the tenant's schema anywhere but where it lives."""
    assert replication_objects() == []
    tenant = fresh(tenant)
    strays = [o for o in orphans.orphan_list() if o.schema.startswith(tenant.schema_name)]
    assert strays == [], strays
    assert moves_in_progress() == []


def place_on(tenant: Tenant, shard_name: str) -> None:
    """Move the tenant (in this process) so a drill starts from ``shard_name``."""
    if fresh(tenant).shard.name != shard_name:
        moves.tenant_move(tenant=fresh(tenant), target=Shard.objects.get(name=shard_name))


# (path, pause point): the mover is SIGKILLed while it waits there.
DRILLS = [
    ("logical", "copy"),  # publication, slot and subscription made, initial copy under way; no freeze
    ("locked", "copy"),  # frozen, source tables locked, first table copied
    ("logical", "catch_up"),  # target applying the source's changes, ranges compared; no freeze
    ("locked", "flip"),  # registry switched, the old copy not dropped yet
    ("logical", "freeze"),  # frozen, source locked, caught up and verified, not switched
    ("logical", "flip"),  # registry switched; subscription, slot, publication and old copy still there
]


@pytest.mark.parametrize(("path", "point"), DRILLS, ids=[f"{p}-{q}" for p, q in DRILLS])
def test_mover_killed_in_a_phase_loses_no_write_and_a_resume_finishes(drill, django_db_blocker, settings, path,
                                                                      point):
    tenant, writer = drill
    source, target = ("b", "main") if path == "logical" else ("main", "b")
    settings.MOVE_DRAIN_SECONDS = 0.3
    with django_db_blocker.unblock():
        place_on(tenant, source)
        mover = Mover(SLUG, target, MOVE_PAUSE_AT=point, MOVE_PAUSE_SECONDS="60", MOVE_DRAIN_SECONDS="0.3",
                      PYTHONUNBUFFERED="1")
        try:
            wait_until(lambda: f"pausing at {point}" in mover.output(), 90, interval=0.05,
                       message=f"mover at {point}: {mover.output()[-2000:]}")
            move = Move.objects.filter(tenant=tenant).latest("pk")
            assert move.path == path and not move.finished
            in_progress = move_progress(move)
            assert set(in_progress) == PROGRESS_KEYS and not in_progress["finished"]
            assert move in moves_in_progress()
            if point == "copy":  # one mover per tenant
                with pytest.raises(MoveInProgress, match="being moved by another process"):
                    moves.tenant_move(tenant=fresh(tenant), target=Shard.objects.get(name=target))
            killed_at, killed_wall = mover.kill(), timezone.now()
        finally:
            mover.close()
        # Never frozen past the lease: writes are acknowledged again within it.
        wait_until(lambda: writer.acked_after(killed_at), LEASE_SECONDS + 10, interval=0.05,
                   message=f"writes acknowledged after the kill (refused: {writer.refused_since(killed_at - 5)})")
        reopened = min(at for _, at in writer.acked if at > killed_at) - killed_at
        assert reopened < LEASE_SECONDS + 2, reopened
        frozen_until = fresh(tenant).writes_frozen_until
        assert frozen_until is None or frozen_until <= killed_wall + dt.timedelta(seconds=LEASE_SECONDS + 0.5)
        # Nothing unreported: the unfinished move owns what it made and is listed; an old copy
        # left by a switched move is listed as an orphan.
        assert [m.pk for m in moves_in_progress()] == [move.pk]
        if path == "logical":
            assert {o.kind for o in replication_objects() if o.move_id == move.pk} >= {"publication", "slot",
                                                                                       "subscription"}
        status = command_output("shard_orphans")
        assert "0 replication orphan(s)" in status, status
        if point == "flip":
            assert move.retired_schema in status and f"left by move {move.pk}" in status, status

        if (path, point) == ("logical", "catch_up"):
            # Beat's recovery task instead of an operator: rolled back at once, then moved again.
            settings.MOVE_LEASE_SECONDS = 0.5
            time.sleep(1.1)
            counts = moves.recover_stale_moves()
            assert counts["rolled_back"] == 1 and counts["failed"] == 0, counts
            assert fresh(tenant).shard.name == source and replication_objects() == []
            settings.MOVE_LEASE_SECONDS = 30
            moves.tenant_move(tenant=fresh(tenant), target=Shard.objects.get(name=target))
            finished_how = "recovery task rolled back, moved again"
        else:
            resumed = manage("move_tenant", SLUG, "--resume", timeout=120, MOVE_LEASE_SECONDS=str(LEASE_SECONDS),
                             MOVE_DRAIN_SECONDS="0.3")
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            finished_how = resumed.stdout.strip().splitlines()[-1]
        assert fresh(tenant).shard.name == target
        assert Move.objects.filter(tenant=tenant).latest("pk").phase == Move.Phase.DONE
        assert Move.objects.get(pk=move.pk).finished
        assert_nothing_left(tenant)
        assert_no_acknowledged_write_lost(tenant, writer)
        assert not fresh(tenant).writes_frozen
        print(f"{path}/{point}: writes acknowledged {reopened:.2f}s after the kill; {finished_how}")


def test_ten_moves_in_a_row_under_load_all_succeed(drill, django_db_blocker, settings):
    """Alternating b -> main (logical) and main -> b (locked), by the command, under >= 20 writes/s."""
    tenant, writer = drill
    settings.MOVE_DRAIN_SECONDS = 0.3
    with django_db_blocker.unblock():
        started, attempts = time.monotonic(), writer.attempts
        freezes = []
        for number in range(10):
            target = "main" if fresh(tenant).shard.name == "b" else "b"
            output = command_output("move_tenant", SLUG, target)
            move = Move.objects.filter(tenant=tenant).latest("pk")
            assert move.phase == Move.Phase.DONE and fresh(tenant).shard.name == target, (number, output)
            assert move.path == (Move.Path.LOGICAL if target == "main" else Move.Path.LOCKED)
            assert f"path: {move.path}" in output and "%:" in output and " MB" in output, output
            progress = move_progress(move)
            assert set(progress) == PROGRESS_KEYS and progress["finished"] and progress["percent"] == 100
            assert progress["bytes_total"] > 0 and progress["rows_total"] > 0 and progress["eta_seconds"] is None
            assert 0 < move.freeze_seconds < 30  # the lease was renewed, never lapsed into a gap
            freezes.append((move.path, move.freeze_seconds, move.total_seconds))
        rate = writer.rate_since(started, attempts)
        assert rate >= 20, rate
        assert_nothing_left(tenant)
        assert_no_acknowledged_write_lost(tenant, writer)
        for kind in ("logical", "locked"):
            mine = [(f, t) for p, f, t in freezes if p == kind]
            print(f"{kind}: freeze max {max(f for f, _ in mine):.3f}s, move max {max(t for _, t in mine):.1f}s")
        print(f"10 moves at {rate:.0f} writes/s; {len(writer.refused)} writes refused (503) in the module so far")


def test_move_start_runs_the_move_in_a_maintenance_worker_and_reports_progress(drill, django_db_blocker):
    """The console's path: services.move_start enqueues, a real worker moves,
    move_progress follows it. Another tenant is neither moved nor changed."""
    from apps.fleet.services import move_start
    from tests.workers import CeleryWorker, live_broker

    tenant, writer = drill
    with live_broker("redis") as broker, django_db_blocker.unblock():
        target = "main" if fresh(tenant).shard.name == "b" else "b"
        bystander = Tenant.objects.select_related("shard").get(slug="alpha")
        with tenant_activated(bystander):
            bystander_docs = sorted(Document.objects.values_list("pk", "title"))
        worker = CeleryWorker(broker_url=broker["url"], queues="maintenance", name="mover").start()
        try:
            move = move_start(tenant=tenant, target=Shard.objects.get(name=target), actor="ops@example.test",
                              reason="drill")
            assert move.phase == Move.Phase.PREPARE and move.requested_by == "ops@example.test"
            seen = set()

            def finished() -> bool:
                current = Move.objects.get(pk=move.pk)
                seen.add(current.phase)
                return move_progress(current)["finished"]

            wait_until(finished, 90, interval=0.05, message=f"move finished: {worker.log_text()[-2000:]}")
        finally:
            worker.stop()
        progress = move_progress(Move.objects.get(pk=move.pk))
        assert progress["phase"] == "done" and progress["path"] in ("logical", "locked"), progress
        assert fresh(tenant).shard.name == target
        assert "copy" in seen or "catch_up" in seen, seen
        bystander_now = Tenant.objects.select_related("shard").get(slug="alpha")
        assert bystander_now.shard_id == bystander.shard_id
        with tenant_activated(bystander_now):
            assert sorted(Document.objects.values_list("pk", "title")) == bystander_docs
        assert_nothing_left(tenant)


def test_recovery_drops_the_replication_objects_of_a_move_that_is_over(drill, django_db_blocker, monkeypatch):
    """A slot that outlived its move (the mover died while cleaning up) is an
    orphan: listed, and dropped by the recovery task."""
    tenant, _ = drill
    with django_db_blocker.unblock():
        place_on(tenant, "b")
        source, target = Shard.objects.get(name="b"), Shard.objects.get(name="main")
        with monkeypatch.context() as patch:
            patch.setattr(logical, "drop_for_move", lambda *args: None)  # the cleanup never ran
            moves.tenant_move(tenant=fresh(tenant), target=target)
        move = Move.objects.filter(tenant=tenant).latest("pk")
        assert move.phase == Move.Phase.DONE
        listed = command_output("shard_orphans")
        assert f"slot {logical.Names.for_move(move.pk).name}" in listed and f"left by move {move.pk}" in listed
        counts = moves.recover_stale_moves()
        assert counts["replication_dropped"] >= 3, counts  # subscription, slot, publication
        assert replication_objects() == []
        assert logical.leftovers(source.alias) == [] and logical.leftovers(target.alias) == []
        connections.close_all()
