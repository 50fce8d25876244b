"""The console's job pages: jobs by state (search by tenant, task and
argument), one job's attempts and error with retry and discard, batches and
their progress, and "rebuild every tenant's search index" as a batch.

Thin, like views.py: reads through apps.jobs.selectors, acts through console
services (recorded as operator actions, with a reason)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.jobs import selectors as jobs
from apps.jobs.batches import batch_progress
from apps.jobs.models import Job
from apps.jobs.services import job_dead_letter

from . import forms, selectors, services
from .views import _context, operator_only

STATES = [*Job.State.values, "all"]
OPERATIONS = {"retry": "Retry now", "discard": "Discard"}


def _task_names() -> list[str]:
    """Every task this platform defines (not Celery's own): the filter's choices."""
    from celery import current_app as app  # the project app (config loads it with Django)

    return sorted(name for name in app.tasks if not name.startswith("celery."))


def _filter(data) -> tuple[jobs.JobFilter, str]:
    """The filter of a GET; the tenant by slug (an unknown slug matches nothing)."""
    state = data.get("state") or Job.State.RUNNING
    slug = (data.get("tenant") or "").strip()[:40]
    tenant = selectors.tenant_for_console(slug) if slug else None
    search = (data.get("q") or "").strip()[:200]
    flt = jobs.JobFilter(state=state if state in STATES else Job.State.RUNNING,
                         tenant_id=tenant.pk if tenant else (-1 if slug else None),
                         task=(data.get("task") or "").strip()[:200],
                         search=search if len(search) >= jobs.MIN_SEARCH else "")
    return flt, slug


def _query(flt: jobs.JobFilter, slug: str, **changes) -> str:
    from urllib.parse import urlencode

    values = {"state": flt.state, "tenant": slug, "task": flt.task, "q": flt.search, **changes}
    return urlencode({key: value for key, value in values.items() if value})


@require_GET
def job_list(request):
    flt, slug = _filter(request.GET)
    page, next_cursor = jobs.job_page(flt, after=request.GET.get("after", ""))
    counts = jobs.state_counts(flt)
    short = (request.GET.get("q") or "").strip()
    if short and len(short) < jobs.MIN_SEARCH:
        messages.info(request, f"Search arguments with {jobs.MIN_SEARCH} characters or more.")
    return render(request, "console/jobs.html", _context(
        request, "Jobs", rows=page, flt=flt, tenant_slug=slug, task_names=_task_names(),
        tabs=[(state, counts.get(state), _query(flt, slug, state=state)) for state in Job.State.values],
        cap=jobs.COUNT_CAP, next_query=_query(flt, slug, after=next_cursor) if next_cursor else "",
        all_query=_query(flt, slug, state="all"), batches=jobs.batches_recent(10)))


def _job_or_404(task_id: str) -> Job:
    job = jobs.job_of(task_id)
    if job is None:
        raise Http404("No such job (it may be past its retention).")
    return job


def _shown_arguments(job: Job) -> str:
    try:
        return json.dumps(json.loads(job.arguments), indent=2, sort_keys=True)
    except ValueError:  # cut at its bound
        return job.arguments


@require_GET
def job_detail(request, task_id: str):
    job = _job_or_404(task_id)
    dead = job_dead_letter(job) if job.state in (Job.State.FAILED, Job.State.DEAD) else None
    return render(request, "console/job_detail.html", _context(
        request, f"Job {job.task_name}", job=job, arguments=_shown_arguments(job), dead_letter=dead,
        history=sorted(job.history, key=lambda entry: entry.get("t") or ""), operations=OPERATIONS,
        batch=jobs.batch_of(str(job.batch_id)) if job.batch_id else None))


@operator_only
def job_action(request, task_id: str, operation: str):
    if operation not in OPERATIONS:
        raise Http404(f"No operation '{operation}'.")
    job = _job_or_404(task_id)
    form = forms.ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        perform = services.job_retry if operation == "retry" else services.job_discard
        try:
            perform(job=job, actor=request.user, reason=form.cleaned_data["reason"])
        except services.ConsoleError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Job {job.task_id}: {'sent again' if operation == 'retry' else 'discarded'}.")
            return HttpResponseRedirect(reverse("console:job", args=[job.task_id]))
    return render(request, "console/job_confirm.html", _context(
        request, f"{OPERATIONS[operation]}: {job.task_name}", job=job, form=form, operation=operation,
        label=OPERATIONS[operation]))


# --- batches -----------------------------------------------------------------------------


def _batch_or_404(batch_id: str):
    batch = jobs.batch_of(batch_id)
    if batch is None:
        raise Http404("No such batch (it may be past its retention).")
    return batch


def _progress_json(batch) -> dict:
    """The batch's progress in the shape console.js polls for."""
    progress = batch_progress(batch)
    phase = "done" if progress["finished"] else "running"
    return {**progress, "phase": phase, "jobs_total": progress["total"], "jobs_done": progress["done"],
            "jobs_failed": progress["failed"]}


@require_GET
def batch_detail(request, batch_id: str):
    batch = _batch_or_404(batch_id)
    flt = jobs.JobFilter(state=request.GET.get("state") or "all", batch_id=str(batch.pk))
    if flt.state not in STATES:
        flt = jobs.JobFilter(state="all", batch_id=str(batch.pk))
    page, next_cursor = jobs.job_page(flt, after=request.GET.get("after", ""))
    return render(request, "console/batch_detail.html", _context(
        request, f"Batch: {batch.name}", batch=batch, progress=_progress_json(batch), rows=page,
        next_cursor=next_cursor))


@require_GET
def batch_progress_json(request, batch_id: str):
    batch = jobs.batch_of(batch_id)
    if batch is None:
        return JsonResponse({"error": "no such batch"}, status=404)
    response = JsonResponse(_progress_json(batch))
    response["Cache-Control"] = "no-store"
    return response


@operator_only
def reindex_all(request):
    """Rebuild every tenant's search index, as one batch with progress."""
    form = forms.ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            done = services.tenants_reindex_all(actor=request.user, reason=form.cleaned_data["reason"])
        except services.ConsoleError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Search index rebuild queued for {done.detail['tenants']} tenant(s).")
            return HttpResponseRedirect(reverse("console:batch", args=[done.detail["batch"]]))
    return render(request, "console/reindex_all.html", _context(
        request, "Rebuild every tenant's search index", form=form,
        tenants=selectors.console_tenants().count()))
