"""The operator console in a real browser: Debian's chromium driven by
Playwright against a real gunicorn and a real Celery worker on this run's
test databases and broker.

Screenshots for the README are written only with SAVE_SCREENSHOTS=1
(docs/screenshots/overview.png, move-in-progress.png).
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.browser import login, running_platform, screenshot
from tests.tools import require, second_shard_configured

pytestmark = pytest.mark.live

OPERATOR = ("console-ops@platform.test", "console-ops-pass")


@pytest.fixture(scope="module")
def platform(tenants, django_db_setup, django_db_blocker):
    """gunicorn + a worker for moves and search tasks, and a committed operator account."""
    from apps.accounts.models import User

    with django_db_blocker.unblock():
        User.objects.filter(email=OPERATOR[0]).delete()
        user = User.objects.create_superuser(email=OPERATOR[0], password=OPERATOR[1])
        try:
            # Generous reading bounds: the machine running the suite may be busy.
            with running_platform(celery_queues="maintenance,search",
                                  env={"METRICS_TIMEOUT_SECONDS": "5", "CONSOLE_READ_TIMEOUT_SECONDS": "10"}) as live:
                yield live
        finally:
            user.delete()


@pytest.fixture
def operator_page(page, platform):  # noqa: F811  (the fixture imported above)
    login(page, platform.url, *OPERATOR)
    return page


def test_operator_reads_the_overview(operator_page, platform, tenants, django_db_blocker):
    from playwright.sync_api import expect

    from apps.backoffice.tests.test_console import letter
    from apps.jobs.models import DeadLetter

    tab = operator_page
    with django_db_blocker.unblock():
        dead = letter(tenants["alpha"], task="reports.run_export", error="TimeoutError: storage slow")
    try:
        expect(tab.locator("#console-banner")).to_contain_text("Operator console")
        tab.click("#console-banner a >> text=Operator console")
        expect(tab).to_have_title(re.compile("Operator console"))
        shards = tab.locator("#shards")
        expect(shards.locator('tr[data-shard="main"]')).to_contain_text("up")
        queues = tab.locator("#queues")
        expect(queues.locator('tr[data-queue="maintenance"]')).to_be_visible()
        # The test's worker consumes maintenance: the overview counts it.
        workers = queues.locator('tr[data-queue="maintenance"] td').nth(3)
        assert int(workers.inner_text()) >= 1
        expect(tab.locator('#dead-letters tr[data-task="reports.run_export"]')).to_contain_text("1")
        expect(tab.locator("#outboxes")).to_contain_text("control")
        expect(tab.locator("#partitions")).to_contain_text("Months made ahead")
        assert not tab.locator("[data-unavailable]").count(), tab.locator("[data-unavailable]").all_inner_texts()
        screenshot(tab, "overview", full_page=True)
        tab.click('#dead-letters a >> text=reports.run_export')
        expect(tab.locator(f'tr[data-dead-letter="{dead.pk}"]')).to_contain_text("storage slow")
    finally:
        with django_db_blocker.unblock():
            DeadLetter.objects.filter(pk=dead.pk).delete()


def test_operator_moves_a_tenant_and_watches_the_progress_reach_done(operator_page, platform, django_db_blocker):
    from playwright.sync_api import expect

    from apps.tenancy.models import Tenant
    from tests.support import committed_tenant

    require(second_shard_configured(), "needs a second shard (b)")
    tab = operator_page
    with django_db_blocker.unblock(), committed_tenant("mover", shard="main"):
        tab.goto(f"{platform.url}/admin/console/tenants/mover/")
        expect(tab.locator("[data-shard]")).to_have_text("main")
        tab.click('[data-action="move"]')
        tab.select_option("select[name=target]", "b")
        tab.fill("textarea[name=reason]", "make room on main")
        tab.click("input[type=submit][name=_confirm]")
        bar = tab.locator(".move-progress")
        expect(bar).to_be_visible()
        expect(bar.locator("progress")).to_be_visible()
        # Past "prepare" (rows being copied, or later), unless it was quicker than a poll.
        tab.wait_for_function("(b) => b.dataset.phase !== 'prepare' || b.dataset.finished === 'true'",
                               arg=bar.element_handle(), timeout=60_000)
        screenshot(tab, "move-in-progress")
        expect(bar).to_have_attribute("data-finished", "true", timeout=60_000)
        expect(bar.locator("[data-field=phase]")).to_contain_text("done")
        expect(bar.locator("progress")).to_have_attribute("value", "100")
        assert Tenant.objects.get(slug="mover").shard.name == "b", platform.logs()
        tab.goto(f"{platform.url}/admin/console/tenants/mover/")
        expect(tab.locator("[data-shard]")).to_have_text("b")
        expect(tab.locator("#tenant-moves")).to_contain_text("Done")
        expect(tab.locator(".operator-actions")).to_contain_text("make room on main")


def test_operator_replays_a_dead_letter(operator_page, platform, tenants, django_db_blocker):
    from playwright.sync_api import expect

    from apps.backoffice.tests.test_console import letter
    from apps.jobs.models import DeadLetter

    tab = operator_page
    with django_db_blocker.unblock():
        dead = letter(tenants["alpha"], task="search.index_documents", error="OperationalError: shard restarting")
    try:
        tab.goto(f"{platform.url}/admin/console/dead-letters/?tenant=alpha")
        row = tab.locator(f'tr[data-dead-letter="{dead.pk}"]')
        expect(row).to_contain_text("shard restarting")
        row.locator(f'[data-replay="{dead.pk}"]').click()
        expect(tab.locator("#confirm-list")).to_contain_text("search.index_documents")
        tab.fill("textarea[name=reason]", "the shard is back")
        tab.click("input[type=submit][name=_confirm]")
        expect(tab.locator(".messagelist")).to_contain_text("1 dead letter(s) replayed")
        tab.goto(f"{platform.url}/admin/console/dead-letters/?tenant=alpha&status=all")
        expect(tab.locator(f'tr[data-dead-letter="{dead.pk}"] [data-status]')).to_have_text("replayed")
        assert DeadLetter.objects.get(pk=dead.pk).replay_task_id
    finally:
        with django_db_blocker.unblock():
            DeadLetter.objects.filter(pk=dead.pk).delete()


def test_operator_suspends_and_resumes_a_tenant(operator_page, platform, tenants, django_db_blocker):
    from playwright.sync_api import expect

    from apps.tenancy.models import Tenant

    tab = operator_page
    alpha = tenants["alpha"]

    def api_status() -> int:
        return requests.get(f"{platform.server.url}/api/v1/documents", headers={"Host": "alpha.localhost"}, timeout=5).status_code

    try:
        tab.goto(f"{platform.url}/admin/console/tenants/alpha/")
        expect(tab.locator("[data-status]")).to_have_text("Active")
        tab.click('[data-action="suspend"]')
        # No reason, no action: the browser asks for one before the server would refuse.
        expect(tab.locator("textarea[name=reason]")).to_have_attribute("required", "")
        tab.fill("textarea[name=reason]", "unpaid invoice")
        tab.click("input[type=submit][name=_confirm]")
        expect(tab.locator("[data-status]")).to_have_text("Suspended")
        expect(tab.locator(".operator-actions")).to_contain_text("unpaid invoice")
        assert api_status() == 403
        tab.click('[data-action="resume"]')
        tab.fill("textarea[name=reason]", "invoice paid")
        tab.click("input[type=submit][name=_confirm]")
        expect(tab.locator("[data-status]")).to_have_text("Active")
        assert api_status() != 403
    finally:
        with django_db_blocker.unblock():
            from apps.tenancy.services import tenant_set_status

            tenant_set_status(tenant=Tenant.objects.get(pk=alpha.pk), status=Tenant.Status.ACTIVE)


def test_operator_retries_a_dead_job_and_rebuilds_every_index_as_a_batch(operator_page, platform, tenants,
                                                                         django_db_blocker):
    from playwright.sync_api import expect

    from apps.backoffice.tests.test_console_jobs import dead_job
    from apps.jobs.models import DeadLetter, Job, JobBatch

    tab = operator_page
    with django_db_blocker.unblock():
        job = dead_job(tenants["alpha"], task="search.index_documents", error="OperationalError: shard restarting")
    try:
        tab.goto(f"{platform.url}/admin/console/")
        expect(tab.locator('#jobs [data-jobs="dead"]')).not_to_have_text("0")
        expect(tab.locator("#workers tr[data-worker]").first).to_be_visible()  # from heartbeats, no broadcast
        tab.click("#jobs a >> text=All jobs")
        tab.click('#job-states a[data-state="dead"]')
        row = tab.locator(f'tr[data-job="{job.task_id}"]')
        expect(row).to_contain_text("shard restarting")
        row.locator("a").first.click()
        expect(tab.locator("#job [data-state]")).to_have_text("dead")
        tab.click('[data-job-action="retry"]')
        tab.fill("textarea[name=reason]", "the shard is back")
        tab.click("input[type=submit][name=_confirm]")
        expect(tab.locator(".messagelist")).to_contain_text("sent again")
        # The search worker runs it; its record follows (queued, running, then done).
        expect(tab.locator("#job [data-state]")).to_have_text("queued")
        screenshot(tab, "job-detail")
        tab.goto(f"{platform.url}/admin/console/jobs/")
        tab.click('[data-action="reindex-all"]')
        tab.fill("textarea[name=reason]", "new search configuration")
        tab.click("input[type=submit][name=_confirm]")
        bar = tab.locator("#batch-progress")
        expect(bar).to_have_attribute("data-finished", "true", timeout=60_000)
        expect(bar.locator("[data-field=figures]")).to_contain_text("jobs")
        screenshot(tab, "batch-progress")
        with django_db_blocker.unblock():
            batch = JobBatch.objects.order_by("-created_at").first()
            assert batch.done == batch.total > 0 and batch.failed == 0, platform.logs()
    finally:
        with django_db_blocker.unblock():
            DeadLetter.objects.filter(task_id=job.task_id).delete()
            Job.objects.filter(task_name__in=["search.index_documents", "search.rebuild_index"]).delete()
            JobBatch.objects.filter(created_by=OPERATOR[0]).delete()
