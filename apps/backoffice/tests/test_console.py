"""The operator console's pages and actions, through the Django test client."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.models import SupportGrant, User
from apps.backoffice.models import OperatorAction
from apps.jobs.models import DeadLetter
from apps.reports.models import ExportRequest
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Move, Shard, Tenant
from tests.tools import require

pytestmark = pytest.mark.django_db

CONSOLE = "/admin/console/"


def logged_in(email: str, password: str, host: str = "localhost") -> Client:
    client = Client(HTTP_HOST=host)
    response = client.post("/admin/login/?next=/admin/", {"username": email, "password": password})
    assert response.status_code == 302, response.content[:300]
    return client


@pytest.fixture
def ops(tenants):
    User.objects.create_superuser(email="ops@console.test", password="ops-pass")
    return logged_in("ops@console.test", "ops-pass")


@pytest.fixture
def drained_queues():
    """Replays send real messages to this run's broker: leave no message for a later test's worker."""
    yield
    from config.celery_app import app
    from tests.workers import purge_queues

    purge_queues(app)


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def letter(tenant: Tenant | None, task="search.index_documents", error="OperationalError: shard gone", **fields):
    now = timezone.now()
    headers = {"tenant_id": tenant.pk, "tenant_slug": tenant.slug} if tenant else {}
    return DeadLetter.objects.create(
        task_name=task, task_id=f"t-{now.timestamp()}", queue="search", tenant_id=tenant.pk if tenant else None,
        tenant_slug=tenant.slug if tenant else "", args=[[]], kwargs={}, headers=headers, exception=error,
        attempts=5, first_failed_at=now - dt.timedelta(minutes=5), last_failed_at=now, **fields)


def status_of(tenant: Tenant) -> str:
    return Tenant.objects.get(pk=tenant.pk).status


# --- access ----------------------------------------------------------------------------------


def test_anonymous_and_non_staff_users_and_tenant_owners_get_no_console(tenants):
    assert Client(HTTP_HOST="localhost").get(CONSOLE).status_code == 302  # to the login page
    User.objects.create_user(email="plain@console.test", password="plain-pass")
    refused = Client(HTTP_HOST="localhost").post("/admin/login/?next=/admin/",
                                                 {"username": "plain@console.test", "password": "plain-pass"})
    assert refused.status_code == 200 and b"staff account" in refused.content
    # A tenant owner: no console on the operators' host, and none on the tenant's host either.
    owner = Client(HTTP_HOST="localhost")
    owner.login(username="owner@alpha.test", password="alpha-pass")
    for path in (CONSOLE, f"{CONSOLE}tenants/alpha/", f"{CONSOLE}dead-letters/", f"{CONSOLE}moves/1/progress.json",
                 f"{CONSOLE}shards/main/", f"{CONSOLE}actions/"):
        response = owner.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    on_tenant_host = logged_in("owner@alpha.test", "alpha-pass", host="alpha.localhost")
    response = on_tenant_host.get(CONSOLE)
    assert response.status_code in (302, 404) and b"Operator console" not in response.content
    response = on_tenant_host.post(f"{CONSOLE}tenants/beta/suspend/", {"reason": "take over"})
    assert response.status_code in (302, 403, 404)
    assert status_of(tenants["beta"]) == Tenant.Status.ACTIVE


def test_staff_may_read_but_only_superusers_act(tenants, alpha):
    User.objects.create_user(email="staff@console.test", password="staff-pass", is_staff=True)
    staff = logged_in("staff@console.test", "staff-pass")
    assert staff.get(f"{CONSOLE}tenants/alpha/").status_code == 200
    assert staff.post(f"{CONSOLE}tenants/alpha/suspend/", {"reason": "curious"}).status_code == 403
    assert status_of(alpha) == Tenant.Status.ACTIVE and not OperatorAction.objects.exists()


def test_the_admin_index_leads_to_the_console(ops):
    page = ops.get("/admin/")
    assert b'id="console-banner"' in page.content and CONSOLE.encode() in page.content


def test_every_action_form_requires_a_reason(ops, alpha):
    for action in ("suspend", "move", "reindex", "export", "support"):
        response = ops.post(f"{CONSOLE}tenants/alpha/{action}/", {"reason": ""})
        assert response.status_code == 200 and "Say why" in text(response), action
    assert status_of(alpha) == Tenant.Status.ACTIVE and not OperatorAction.objects.exists()
    response = ops.post(f"{CONSOLE}shards/main/drain/", {"reason": " "})
    assert "Say why" in text(response) and Shard.objects.get(name="main").state == Shard.State.ACTIVE


# --- tenant page and actions ---------------------------------------------------------------


def test_tenant_page_shows_plan_usage_shard_status_and_traffic(ops, alpha, beta):
    from apps.backoffice.console import traffic

    traffic.buffer.take()  # counts gathered by earlier tests' requests
    for status in (200, 200, 500):
        traffic.record(tenant_id=alpha.pk, status=status, duration_ms=12, method="GET", path="/api/v1/documents",
                       request_id=f"req-{status}")
    assert traffic.flush()
    page = ops.get(f"{CONSOLE}tenants/alpha/")
    assert page.status_code == 200
    shown = text(page)
    assert "Alpha Inc" in shown and f"Plan {alpha.plan.code}" in shown and "Shard main" in shown
    assert "Status Active" in shown
    assert re.search(r"documents \d+ \d+", shown)  # usage against the quota
    assert "Requests 3 " in shown and "Server errors (5xx) 1 " in shown and "req-500" in shown
    # Beta's counters are beta's: alpha's traffic is not shown there.
    assert "Requests 0 " in text(ops.get(f"{CONSOLE}tenants/beta/"))
    assert ops.get(f"{CONSOLE}tenants/nosuch/").status_code == 404
    # The admin's Content-Security-Policy (script-src 'self') holds: scripts are files, none inline.
    assert "script-src 'self'" in page["Content-Security-Policy"]
    assert not re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.content.decode())
    assert "/static/console/console.js" in page.content.decode()


def test_tenant_requests_are_counted_per_tenant_and_a_dead_redis_costs_nothing(alpha, beta, settings):
    from apps.backoffice.console import traffic
    from apps.caching import health
    from tests.support import free_port

    traffic.buffer.take()  # counts gathered by earlier tests' requests
    for _ in range(2):
        assert Client(HTTP_HOST="alpha.localhost").get("/").status_code == 200
    Client(HTTP_HOST="alpha.localhost").get("/api/v1/nowhere")
    assert traffic.flush()
    seen = traffic.tenant_traffic(tenant_id=alpha.pk)
    assert (seen.requests, seen.client_errors, seen.server_errors) == (3, 1, 0)
    assert traffic.tenant_traffic(tenant_id=beta.pk).requests == 0
    assert traffic.top_tenants()[0] == (alpha.pk, 3)
    Client(HTTP_HOST="localhost").get("/")  # the operators' host is nobody's traffic
    traffic.flush()
    assert sum(n for _, n in traffic.top_tenants()) == 3

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    try:
        assert Client(HTTP_HOST="alpha.localhost").get("/").status_code == 200  # never waits on Redis
        assert not traffic.flush()
        assert traffic.paused()  # flushing paused; requests are not failed or slowed
        assert not traffic.tenant_traffic(tenant_id=alpha.pk).available
        assert traffic.top_tenants() is None
    finally:
        health.record_success()  # the dead Redis' pause, for the tests after this one


def test_the_public_row_is_not_a_console_tenant(ops):
    assert ops.get(f"{CONSOLE}tenants/public/").status_code == 404
    assert ops.post(f"{CONSOLE}tenants/public/suspend/", {"reason": "try"}).status_code == 404
    assert "public" not in [row for row in re.findall(r'data-tenant="([^"]+)"', ops.get(f"{CONSOLE}tenants/").content.decode())]


def test_suspend_and_resume_touch_only_that_tenant_and_are_recorded(ops, alpha, beta):
    response = ops.post(f"{CONSOLE}tenants/alpha/suspend/", {"reason": "abuse report 42"})
    assert response.status_code == 302
    assert status_of(alpha) == Tenant.Status.SUSPENDED and status_of(beta) == Tenant.Status.ACTIVE
    page = text(ops.get(response["Location"]))
    assert "Status Suspended" in page and "abuse report 42" in page
    refused = Client(HTTP_HOST="alpha.localhost").get("/api/v1/documents")
    assert refused.status_code == 403 and refused.json()["type"].endswith("tenant-suspended")
    assert "tenant-suspended" not in Client(HTTP_HOST="beta.localhost").get("/api/v1/documents").content.decode()
    # Suspending twice is refused with a message, and the refusal is recorded too.
    again = ops.post(f"{CONSOLE}tenants/alpha/suspend/", {"reason": "again"})
    assert again.status_code == 200 and "suspended already" in text(again)
    ops.post(f"{CONSOLE}tenants/alpha/resume/", {"reason": "cleared"})
    assert status_of(alpha) == Tenant.Status.ACTIVE
    assert "tenant-suspended" not in Client(HTTP_HOST="alpha.localhost").get("/api/v1/documents").content.decode()
    records = list(OperatorAction.objects.order_by("pk").values_list("kind", "tenant_id", "reason", "outcome",
                                                                      "actor_email"))
    assert records == [
        ("tenant.suspend", alpha.pk, "abuse report 42", "done", "ops@console.test"),
        ("tenant.suspend", alpha.pk, "again", "failed", "ops@console.test"),
        ("tenant.resume", alpha.pk, "cleared", "done", "ops@console.test"),
    ]
    assert not OperatorAction.objects.filter(tenant_id=beta.pk).exists()


def test_move_starts_a_move_of_that_tenant_only_with_a_progress_page(ops, alpha, beta):
    require(Shard.objects.filter(name="b").exists(), "needs a second shard (b)")
    form = ops.get(f"{CONSOLE}tenants/alpha/move/")
    assert 'value="b"' in form.content.decode() and 'value="main"' not in form.content.decode()
    response = ops.post(f"{CONSOLE}tenants/alpha/move/", {"target": "b", "reason": "rebalance by hand"})
    assert response.status_code == 302, text(response)[:500]
    move = Move.objects.get(tenant=alpha)
    assert move.target.name == "b" and move.requested_by == "ops@console.test" and move.reason == "rebalance by hand"
    assert not Move.objects.filter(tenant=beta).exists()
    action = OperatorAction.objects.get(kind="tenant.move")
    assert action.move_ids == [move.pk] and action.tenant_id == alpha.pk
    page = ops.get(response["Location"]).content.decode()
    assert f'data-progress-url="{CONSOLE}moves/{move.pk}/progress.json"' in page and "<progress" in page
    progress = ops.get(f"{CONSOLE}moves/{move.pk}/progress.json").json()
    assert progress["phase"] == "prepare" and progress["finished"] is False and progress["tenant"] == "alpha"
    assert "alpha" in text(ops.get(CONSOLE)).split("Moves in progress")[1]
    # A second move while one is open is refused with the reason.
    again = ops.post(f"{CONSOLE}tenants/alpha/move/", {"target": "b", "reason": "twice"})
    assert again.status_code == 200 and "errornote" in again.content.decode()


def test_reindex_export_and_support_act_on_that_tenant_only(ops, alpha, beta):
    from apps.outbox.models import TenantOutboxMessage

    def outbox_rows(tenant):
        with tenant_activated(tenant):
            return list(TenantOutboxMessage.objects.filter(task_name="search.rebuild_index").values_list("kwargs", flat=True))

    assert ops.post(f"{CONSOLE}tenants/alpha/reindex/", {"reason": "search looks stale"}).status_code == 302
    assert outbox_rows(alpha) == [{"restart": True}] and outbox_rows(beta) == []

    assert ops.post(f"{CONSOLE}tenants/alpha/export/", {"reason": "owner asked", "kind": "documents",
                                                         "format": "csv"}).status_code == 302
    with tenant_activated(alpha):
        assert ExportRequest.objects.filter(kind="documents", format="csv").count() == 1
    with tenant_activated(beta):
        assert not ExportRequest.objects.exists()

    User.objects.create_superuser(email="helper@console.test", password="x-pass-123")
    response = ops.post(f"{CONSOLE}tenants/alpha/support/", {"reason": "ticket 7", "operator": "helper@console.test",
                                                             "hours": "2"})
    assert response.status_code == 302
    grant = SupportGrant.objects.get()
    assert grant.tenant_id == alpha.pk and grant.operator.email == "helper@console.test" and grant.reason == "ticket 7"
    bad = ops.post(f"{CONSOLE}tenants/alpha/support/", {"reason": "x" * 5, "operator": "helper@console.test",
                                                        "hours": "500"})
    assert bad.status_code == 200 and "errorlist" in bad.content.decode()
    kinds = set(OperatorAction.objects.filter(tenant_id=alpha.pk).values_list("kind", flat=True))
    assert kinds == {"tenant.reindex", "tenant.export", "tenant.support"}
    assert not OperatorAction.objects.filter(tenant_id=beta.pk).exists()
    # Each acted inside alpha: alpha's own audit log names the operator, as one.
    from apps.audit.models import AuditEntry

    ops_id = User.objects.get(email="ops@console.test").pk
    with tenant_activated(alpha):
        logged = set(AuditEntry.objects.filter(actor_type="operator", actor_id=ops_id)
                     .values_list("object_type", flat=True))
    assert logged == {"search_index", "export", "support_grant"}
    with tenant_activated(beta):
        assert not AuditEntry.objects.filter(actor_type="operator").exists()


# --- shards ----------------------------------------------------------------------------------


def test_shard_page_lists_its_tenants_by_size_and_the_plans(ops, alpha, beta, gamma):
    page = ops.get(f"{CONSOLE}shards/main/")
    assert page.status_code == 200
    listed = re.findall(r'<tr data-tenant="([^"]+)"', page.content.decode())
    assert {"alpha", "gamma"} <= set(listed) and "beta" not in listed or beta.shard.name == "main"
    assert "Sizes unavailable" not in text(page) and re.search(r"\d+(\.\d+)?\s(KB|MB|bytes)", text(page))
    assert "Drain plan" in text(page) and "Rebalance plan" in text(page)
    assert ops.get(f"{CONSOLE}shards/nosuch/").status_code == 404


def test_drain_marks_the_shard_draining_and_moves_its_tenants_off(ops, alpha, beta, gamma):
    require(Shard.objects.filter(name="b").exists(), "needs a second shard (b)")
    plan = ops.get(f"{CONSOLE}shards/main/drain/")
    planned = re.findall(r'<tr data-tenant="([^"]+)"', plan.content.decode())
    on_main = set(Tenant.objects.filter(shard__name="main").values_list("slug", flat=True))
    assert set(planned) == on_main
    response = ops.post(f"{CONSOLE}shards/main/drain/", {"reason": "server retirement"})
    assert response.status_code == 302
    assert Shard.objects.get(name="main").state == Shard.State.DRAINING
    moved = set(Move.objects.values_list("tenant__slug", flat=True))
    assert moved == on_main and beta.slug not in moved or beta.shard.name == "main"
    action = OperatorAction.objects.get(kind="shard.drain")
    assert action.shard_name == "main" and len(action.move_ids) == len(on_main)
    page = ops.get(response["Location"]).content.decode()
    assert page.count('class="move-progress"') == len(on_main)


def test_rebalance_starts_the_planned_moves(ops, alpha, beta, gamma):
    from apps.tenancy.placement import rebalance_plan

    planned = rebalance_plan()
    form = ops.get(f"{CONSOLE}shards/rebalance/")
    assert form.status_code == 200
    response = ops.post(f"{CONSOLE}shards/rebalance/", {"reason": "even out"})
    if not planned:
        assert "balanced" in text(response)
        return
    assert response.status_code == 302
    assert set(Move.objects.values_list("tenant__slug", flat=True)) == {slug for slug, _, _ in planned}


# --- dead letters ------------------------------------------------------------------------------


def test_dead_letter_replay_button_confirmation_and_record(ops, alpha, beta, drained_queues):
    mine, other = letter(alpha), letter(beta)
    listing = ops.get(f"{CONSOLE}dead-letters/").content.decode()
    assert f'data-replay="{mine.pk}"' in listing and f'data-replay="{other.pk}"' in listing
    confirm = ops.get(f"{CONSOLE}dead-letters/confirm/?operation=replay&ids={mine.pk}")
    assert confirm.status_code == 200 and f'data-dead-letter="{mine.pk}"' in confirm.content.decode()
    assert f'data-dead-letter="{other.pk}"' not in confirm.content.decode()
    no_reason = ops.post(f"{CONSOLE}dead-letters/confirm/", {"operation": "replay", "ids": str(mine.pk), "reason": ""})
    assert no_reason.status_code == 200 and DeadLetter.objects.get(pk=mine.pk).status == "dead"
    done = ops.post(f"{CONSOLE}dead-letters/confirm/", {"operation": "replay", "ids": str(mine.pk),
                                                         "reason": "shard is back"})
    assert done.status_code == 302
    assert DeadLetter.objects.get(pk=mine.pk).status == "replayed"
    assert DeadLetter.objects.get(pk=other.pk).status == "dead"
    action = OperatorAction.objects.get(kind="dead_letter.replay")
    assert action.detail["dead_letters"] == [mine.pk] and action.tenant_id == alpha.pk
    assert "1 dead letter(s) replayed" in text(ops.get(done["Location"]))


def test_bulk_discard_by_task_tenant_and_error_filter(ops, alpha, beta):
    hit = [letter(alpha, error="TimeoutError: provider slow") for _ in range(2)]
    other_tenant = letter(beta, error="TimeoutError: provider slow")
    other_error = letter(alpha, error="ValueError: bad input")
    other_task = letter(alpha, task="reports.run_export", error="TimeoutError: provider slow")
    query = "task=search.index_documents&tenant=alpha&error=timeout"
    listing = ops.get(f"{CONSOLE}dead-letters/?{query}").content.decode()
    assert sorted(map(int, re.findall(r'data-replay="(\d+)"', listing))) == sorted(d.pk for d in hit)
    confirm = ops.get(f"{CONSOLE}dead-letters/confirm/?operation=discard&{query}")
    shown = sorted(map(int, re.findall(r'data-dead-letter="(\d+)"', confirm.content.decode())))
    assert shown == sorted(d.pk for d in hit)
    ids = ",".join(str(d.pk) for d in hit)
    response = ops.post(f"{CONSOLE}dead-letters/confirm/", {"operation": "discard", "ids": ids,
                                                             "reason": "provider fixed; stale", "task": "search.index_documents",
                                                             "tenant": "alpha", "error": "timeout"})
    assert response.status_code == 302
    assert set(DeadLetter.objects.filter(status="discarded").values_list("pk", flat=True)) == {d.pk for d in hit}
    for untouched in (other_tenant, other_error, other_task):
        assert DeadLetter.objects.get(pk=untouched.pk).status == "dead"
    action = OperatorAction.objects.get(kind="dead_letter.discard")
    assert action.detail["filters"]["tenant"] == "alpha" and action.reason == "provider fixed; stale"
    # A bulk action without ids or a filter is refused rather than taking everything.
    assert ops.get(f"{CONSOLE}dead-letters/confirm/?operation=discard").status_code == 302


def test_the_model_admin_sends_replay_and_discard_to_the_confirmation(ops, alpha):
    dead = letter(alpha)
    listing = ops.get("/admin/jobs/deadletter/").content.decode()
    assert f"{CONSOLE}dead-letters/confirm/?operation=replay&amp;ids={dead.pk}" in listing
    response = ops.post("/admin/jobs/deadletter/", {"action": "discard", "_selected_action": [dead.pk]})
    assert response.status_code == 302 and "operation=discard" in response["Location"]
    assert DeadLetter.objects.get(pk=dead.pk).status == "dead"  # nothing happens before the confirmation


# --- operator actions page --------------------------------------------------------------------------


def test_operator_actions_page_lists_who_when_why_and_filters(ops, alpha, beta):
    ops.post(f"{CONSOLE}tenants/alpha/suspend/", {"reason": "alpha reason"})
    ops.post(f"{CONSOLE}tenants/beta/suspend/", {"reason": "beta reason"})
    page = text(ops.get(f"{CONSOLE}actions/"))
    assert "alpha reason" in page and "beta reason" in page and "ops@console.test" in page
    only_alpha = text(ops.get(f"{CONSOLE}actions/?tenant=alpha"))
    assert "alpha reason" in only_alpha and "beta reason" not in only_alpha
    assert "Suspend tenant" in only_alpha
    assert "alpha reason" in text(ops.get("/admin/backoffice/operatoraction/"))


# --- the operator admin's tenant pages -------------------------------------------------------------


def test_public_row_is_not_offered_and_slug_renames_are_refused(ops, alpha):
    public = Tenant.objects.get(schema_name="public")
    listing = ops.get("/admin/tenancy/tenant/").content.decode()
    assert f"/admin/tenancy/tenant/{alpha.pk}/change/" in listing
    assert f"/admin/tenancy/tenant/{public.pk}/change/" not in listing
    assert ops.get(f"/admin/tenancy/tenant/{public.pk}/change/").status_code == 302  # "doesn't exist"

    page = ops.get(f"/admin/tenancy/tenant/{alpha.pk}/change/")
    assert 'name="slug"' not in page.content.decode()  # read-only
    form = {"name": "Alpha Renamed", "slug": "alpha2", "plan": alpha.plan_id,
            "domains-TOTAL_FORMS": "0", "domains-INITIAL_FORMS": "0", "plan_changes-TOTAL_FORMS": "0",
            "plan_changes-INITIAL_FORMS": "0"}
    for match in re.finditer(r'name="([\w-]+-(?:TOTAL|INITIAL|MIN_NUM|MAX_NUM)_FORMS)" value="(\d+)"', page.content.decode()):
        form[match.group(1)] = match.group(2)
    for match in re.finditer(r'name="(domains-\d+-[\w]+)" value="([^"]*)"', page.content.decode()):
        form[match.group(1)] = match.group(2)
    response = ops.post(f"/admin/tenancy/tenant/{alpha.pk}/change/", form, follow=True)
    alpha.refresh_from_db()
    assert alpha.slug == "alpha" and alpha.name == "Alpha Renamed"
    assert "cannot be renamed" in text(response)
    assert Client(HTTP_HOST="alpha.localhost").get("/").json()["tenant"] == "alpha"
