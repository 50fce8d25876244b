"""The console's job pages and the tenant admin's failed jobs, through the
Django test client: lists by state with search by tenant, task and
argument, paged by keyset over a few hundred rows; a job's attempts and
error; retry and discard recorded as operator actions; "rebuild every
tenant's search index" as a batch; and a tenant admin who sees and retries
only their own tenant's failed exports and emails."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from apps.backoffice.models import OperatorAction
from apps.backoffice.tests.test_console import CONSOLE, logged_in, text
from apps.jobs import outbox
from apps.jobs.models import DeadLetter, Job, JobBatch, OutboxMessage
from apps.jobs.records import seq_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(tenants):
    from apps.accounts.models import User

    User.objects.create_superuser(email="jobs-ops@console.test", password="ops-pass")
    return logged_in("jobs-ops@console.test", "ops-pass")


def make_job(tenant=None, *, state="running", task="search.index_documents", minutes_ago=0.0, arguments=None,
             error="", task_id=None, **fields) -> Job:
    at = timezone.now() - dt.timedelta(minutes=minutes_ago)
    return Job.objects.create(
        task_id=task_id or str(uuid.uuid4()), task_name=task, state=state, seq=seq_of(0, 1, state),
        tenant_id=tenant.pk if tenant else None, tenant_slug=tenant.slug if tenant else "", queue="search",
        arguments=json.dumps(arguments or {"args": [], "kwargs": {}}), error=error, created_at=at, updated_at=at,
        attempts=1, history=[{"t": at.isoformat(), "s": state, "n": 1, "w": "w1@host"}], **fields)


def dead_job(tenant, task="reports.run_export", error="OSError: storage unreachable", **fields) -> Job:
    job = make_job(tenant, state="dead", task=task, error=error, **fields)
    letter = DeadLetter.objects.create(
        task_name=task, task_id=job.task_id, queue="exports", tenant_id=tenant.pk, tenant_slug=tenant.slug,
        args=["exp-1"], kwargs={}, headers={"tenant_id": tenant.pk, "tenant_slug": tenant.slug}, exception=error,
        attempts=3, first_failed_at=job.created_at, last_failed_at=job.created_at)
    Job.objects.filter(pk=job.pk).update(dead_letter_id=letter.pk)
    job.dead_letter_id = letter.pk
    return job


@pytest.fixture
def sent(monkeypatch):
    """What retries send, instead of a broker."""
    from celery import current_app

    messages = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kw: messages.append((name, kw)) or
                        type("Result", (), {"id": kw.get("task_id") or "new"})())
    return messages


def test_jobs_by_state_with_counts_and_search_by_tenant_task_and_argument(ops, alpha, beta):
    mine = make_job(alpha, arguments={"args": [], "kwargs": {"export_id": "exp-7f3a"}})
    make_job(beta, task="reports.run_export")
    retrying = make_job(alpha, state="retrying", error="RetryLater: email provider circuit is open",
                        task="notifications.send_email", eta=timezone.now() + dt.timedelta(seconds=40))
    page = ops.get(f"{CONSOLE}jobs/")
    html = page.content.decode()
    assert page.status_code == 200 and f'data-job="{mine.task_id}"' in html
    assert re.search(r'data-state="running"[^>]*>running <span class="count">\(2\)', html)
    assert re.search(r'data-state="retrying"[^>]*>retrying <span class="count">\(1\)', html)
    assert f'data-job="{retrying.task_id}"' not in html  # another state's tab
    by_tenant = ops.get(f"{CONSOLE}jobs/?state=running&tenant=beta").content.decode()
    assert f'data-job="{mine.task_id}"' not in by_tenant and "reports.run_export" in by_tenant
    by_task = ops.get(f"{CONSOLE}jobs/?state=running&task=reports.run_export").content.decode()
    assert f'data-job="{mine.task_id}"' not in by_task
    by_argument = ops.get(f"{CONSOLE}jobs/?state=all&q=EXP-7F3").content.decode()  # any case
    assert f'data-job="{mine.task_id}"' in by_argument and by_argument.count("data-job=") == 1
    assert ops.get(f"{CONSOLE}jobs/?state=running&tenant=nobody").content.decode().count("data-job=") == 0


def test_a_few_hundred_rows_page_by_keyset_each_row_once_in_bounded_queries(ops, alpha,
                                                                            django_assert_max_num_queries):
    made = {make_job(alpha, minutes_ago=n / 10).task_id for n in range(260)}
    seen, url, pages = [], f"{CONSOLE}jobs/?state=running&tenant=alpha", 0
    while url:
        with django_assert_max_num_queries(20):
            html = ops.get(url).content.decode()
        seen += re.findall(r'<tr data-job="([^"]+)"', html)
        older = re.search(r'href="\?([^"]+)" id="older"', html)
        url = f"{CONSOLE}jobs/?{older.group(1).replace('&amp;', '&')}" if older else ""
        pages += 1
    assert pages == 6 and len(seen) == len(set(seen)) == 260 and set(seen) == made
    assert "(260)" in ops.get(f"{CONSOLE}jobs/?state=running").content.decode()


def test_a_job_page_shows_its_attempts_error_and_arguments_redacted(ops, alpha):
    job = dead_job(alpha, error="SMTPAuthenticationError: https://mail.test/reset?token=s3cr3t-value")
    Job.objects.filter(pk=job.pk).update(arguments=json.dumps({"args": [], "kwargs": {"reset_url": "REDACTED"}}),
                                         history=[{"t": "2026-01-01T10:00:00+00:00", "s": "running", "n": 1},
                                                  {"t": "2026-01-01T10:00:01+00:00", "s": "dead", "n": 1,
                                                   "e": "SMTPAuthenticationError"}])
    page = ops.get(f"{CONSOLE}jobs/{job.task_id}/")
    shown = text(page)
    assert page.status_code == 200 and "s3cr3t-value" not in page.content.decode()
    assert "SMTPAuthenticationError" in shown and "2026-01-01 10:00:01.000" in shown and "reset_url" in shown
    assert 'data-job-action="retry"' in page.content.decode() and 'data-job-action="discard"' in page.content.decode()
    assert ops.get(f"{CONSOLE}jobs/no-such-job/").status_code == 404


def test_retry_and_discard_need_a_reason_and_are_recorded(ops, alpha, sent):
    job, other = dead_job(alpha), dead_job(alpha)
    assert ops.post(f"{CONSOLE}jobs/{job.task_id}/retry/", {"reason": ""}).status_code == 200 and not sent
    done = ops.post(f"{CONSOLE}jobs/{job.task_id}/retry/", {"reason": "storage is back"})
    assert done.status_code == 302
    (name, message), = sent
    assert name == "reports.run_export" and message["task_id"] == job.task_id and message["args"] == ["exp-1"]
    assert Job.objects.get(pk=job.pk).state == "queued"
    assert DeadLetter.objects.get(pk=job.dead_letter_id).status == "replayed"
    action = OperatorAction.objects.get(kind="dead_letter.replay")
    assert action.tenant_id == alpha.pk and action.detail["job"] == job.task_id and action.reason == "storage is back"
    again = ops.post(f"{CONSOLE}jobs/{job.task_id}/retry/", {"reason": "once more"})
    assert again.status_code == 200 and "not failed or dead" in text(again)
    assert ops.post(f"{CONSOLE}jobs/{other.task_id}/discard/", {"reason": "asked twice"}).status_code == 302
    assert Job.objects.get(pk=other.pk).state == "discarded"
    assert DeadLetter.objects.get(pk=other.dead_letter_id).status == "discarded"


def test_staff_who_are_not_superusers_read_but_do_not_retry(tenants, alpha, sent):
    from apps.accounts.models import User

    User.objects.create_user(email="staff@console.test", password="staff-pass", is_staff=True)
    staff = logged_in("staff@console.test", "staff-pass")
    job = dead_job(alpha)
    assert staff.get(f"{CONSOLE}jobs/{job.task_id}/").status_code == 200
    assert staff.post(f"{CONSOLE}jobs/{job.task_id}/retry/", {"reason": "please"}).status_code == 403 and not sent


def test_reindex_every_tenant_is_one_batch_with_a_progress_page(ops, alpha, beta, gamma, monkeypatch):
    monkeypatch.setattr(outbox, "_run_job", lambda job: True)  # rows stay unsent: no worker here
    response = ops.post(f"{CONSOLE}batches/reindex-all/", {"reason": "new search configuration"})
    assert response.status_code == 302
    batch = JobBatch.objects.get()
    assert response["Location"] == f"{CONSOLE}batches/{batch.pk}/"
    rows = [m for m in OutboxMessage.objects.filter(task_name="search.rebuild_index")
            if m.headers.get("batch_id") == str(batch.pk)]
    assert sorted(m.headers["tenant_slug"] for m in rows) == ["alpha", "beta", "gamma"]
    assert batch.total == 3 and batch.callback == "jobs.batch_report"
    action = OperatorAction.objects.get(kind="tenant.reindex")
    assert action.detail == {"batch": str(batch.pk), "tenants": 3, "task": "search.rebuild_index"}
    from apps.jobs.batches import job_finished

    job_finished(batch_id=str(batch.pk), task_id=str(rows[0].pk), outcome="succeeded")
    progress = ops.get(f"{CONSOLE}batches/{batch.pk}/progress.json").json()
    assert (progress["jobs_done"], progress["jobs_total"], progress["finished"]) == (1, 3, False)
    page = ops.get(response["Location"])
    assert page.status_code == 200 and "1 / 3 jobs" in text(page)
    assert ops.get(f"{CONSOLE}jobs/").content.decode().count(f'data-batch="{batch.pk}"') == 1


# --- the tenant admin's failed jobs ---------------------------------------------------------------


def tenant_admin(tenant) -> Client:
    client = Client(HTTP_HOST=f"{tenant.slug}.localhost")
    assert client.login(username=f"owner@{tenant.slug}.test", password=f"{tenant.slug}-pass")
    return client


def test_a_tenant_admin_sees_and_retries_only_its_own_failed_exports_and_emails(alpha, beta, sent):
    from apps.audit.models import AuditEntry
    from apps.tenancy.activation import tenant_activated

    export = dead_job(alpha)
    email = dead_job(alpha, task="notifications.send_email", error="SMTPServerDisconnected")
    internal = dead_job(alpha, task="search.index_documents")
    theirs = dead_job(beta, error="OSError: beta's storage")
    succeeded = make_job(alpha, state="succeeded", task="reports.run_export")
    client = tenant_admin(alpha)
    page = client.get("/admin/failed-jobs/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-job="{export.task_id}"' in html and f'data-job="{email.task_id}"' in html
    for hidden in (internal, theirs, succeeded):
        assert f'data-job="{hidden.task_id}"' not in html
    assert "beta's storage" not in html
    # Another tenant's job, or one not shown here: not found, nothing sent.
    for foreign in (theirs, internal):
        assert client.post(f"/admin/failed-jobs/{foreign.task_id}/retry/").status_code == 404
    assert sent == [] and DeadLetter.objects.get(pk=theirs.dead_letter_id).status == "dead"
    assert client.post(f"/admin/failed-jobs/{export.task_id}/retry/").status_code == 302
    (name, message), = sent
    assert name == "reports.run_export" and message["headers"]["tenant_id"] == alpha.pk
    assert Job.objects.get(pk=export.pk).state == "queued"
    with tenant_activated(alpha):
        assert AuditEntry.objects.filter(object_type="job", object_id=export.task_id).exists()
    assert f'data-job="{export.task_id}"' not in client.get("/admin/failed-jobs/").content.decode()
    # beta's admin sees beta's only.
    beta_page = tenant_admin(beta).get("/admin/failed-jobs/").content.decode()
    assert f'data-job="{theirs.task_id}"' in beta_page and f'data-job="{email.task_id}"' not in beta_page
