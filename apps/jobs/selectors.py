"""Reads of job records and batches, for the operator console and the tenant
admin. Every list is newest first, one page at a time by keyset (the last
row's created_at and task id, never an OFFSET), and every count is capped:
a page costs the same with a million rows as with a hundred (the indexes on
jobs_job are made for exactly these filters)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connections, router, transaction
from django.db.models import Q
from django.utils.dateparse import parse_datetime

from .models import Job, JobBatch

PAGE_SIZE = 50
COUNT_CAP = 1000
# The console's counts and lists give up after this long (a statement timeout).
READ_TIMEOUT_MS = 2000
MIN_SEARCH = 3  # characters: what a trigram index can serve


@dataclass(frozen=True)
class JobFilter:
    state: str = Job.State.RUNNING
    tenant_id: int | None = None
    task: str = ""
    search: str = ""
    batch_id: str = ""

    def rows(self):
        rows = Job.objects.all()
        if self.state != "all":
            rows = rows.filter(state=self.state)
        if self.tenant_id is not None:
            rows = rows.filter(tenant_id=self.tenant_id)
        if self.task:
            rows = rows.filter(task_name=self.task)
        if self.search:
            rows = rows.filter(arguments__icontains=self.search)
        if self.batch_id:
            rows = rows.filter(batch_id=self.batch_id)
        return rows

    def with_state(self, state: str) -> JobFilter:
        return JobFilter(state=state, tenant_id=self.tenant_id, task=self.task, search=self.search,
                         batch_id=self.batch_id)


def cursor_of(job: Job) -> str:
    return f"{job.created_at.isoformat()}|{job.task_id}"


def _after(cursor: str) -> Q | None:
    at, _, task_id = (cursor or "").partition("|")
    when = parse_datetime(at) if at else None
    if when is None or not task_id:
        return None
    return Q(created_at__lt=when) | Q(created_at=when, task_id__lt=task_id)


@contextmanager
def _bounded(alias: str) -> Iterator[None]:
    """A transaction whose statements stop after READ_TIMEOUT_MS (SET LOCAL: safe behind PgBouncer)."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = %s", [READ_TIMEOUT_MS])
        yield


def job_page(flt: JobFilter, *, after: str = "", size: int = PAGE_SIZE) -> tuple[list[Job], str]:
    """One page of jobs and the cursor of the next ('' when none)."""
    rows = flt.rows()
    bound = _after(after)
    if bound is not None:
        rows = rows.filter(bound)
    alias = router.db_for_read(Job)
    with _bounded(alias):
        page = list(rows.using(alias).defer("history").order_by("-created_at", "-task_id")[: size + 1])
    more = len(page) > size
    page = page[:size]
    return page, (cursor_of(page[-1]) if more and page else "")


def capped_count(rows, cap: int = COUNT_CAP) -> int:
    """min(count, cap + 1): the caller shows "1,000+" for cap + 1."""
    return rows.order_by()[: cap + 1].count()


def state_counts(flt: JobFilter, states=None) -> dict[str, int]:
    """Capped count per state under the filter's other conditions."""
    alias = router.db_for_read(Job)
    with _bounded(alias):
        return {state: capped_count(flt.with_state(state).rows().using(alias))
                for state in (states or Job.State.values)}


def job_of(task_id: str, *, tenant_id: int | None = None) -> Job | None:
    """One job; with ``tenant_id``, only if it is that tenant's."""
    rows = Job.objects.filter(pk=task_id)
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    return rows.first()


def recent_jobs(state: str, *, limit: int = 5, since: dt.timedelta | None = None) -> list[Job]:
    """The newest jobs in ``state`` (the overview's retrying and failed rows)."""
    from django.utils import timezone

    rows = Job.objects.filter(state=state)
    if since is not None:
        rows = rows.filter(created_at__gte=timezone.now() - since)
    alias = router.db_for_read(Job)
    with _bounded(alias):
        return list(rows.using(alias).defer("history", "arguments").order_by("-created_at", "-task_id")[:limit])


def tenant_failed_jobs(tenant_id: int, task_names, *, after: str = "", size: int = 25) -> tuple[list[Job], str]:
    """A tenant's own failed and dead jobs among ``task_names``: never another tenant's."""
    rows = Job.objects.filter(tenant_id=tenant_id, state__in=[Job.State.FAILED, Job.State.DEAD],
                              task_name__in=list(task_names))
    bound = _after(after)
    if bound is not None:
        rows = rows.filter(bound)
    page = list(rows.defer("history").order_by("-created_at", "-task_id")[: size + 1])
    return page[:size], (cursor_of(page[size - 1]) if len(page) > size else "")


def batches_recent(limit: int = 20) -> list[JobBatch]:
    return list(JobBatch.objects.order_by("-created_at")[:limit])


def batch_of(batch_id: str) -> JobBatch | None:
    try:
        return JobBatch.objects.filter(pk=batch_id).first()
    except Exception:  # not a UUID
        return None
