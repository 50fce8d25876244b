"""Failed jobs: the organisation's own exports and emails that failed for
good, with the error and a button to run one again.

Only the host's tenant's jobs are ever read or retried: both the list and
the retry select by ``tenant_id = request.tenant.pk`` (apps.jobs.selectors),
so another tenant's job id gives 404, not a retry."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from django.views.decorators.http import require_POST

from apps.audit.services import audit_record
from apps.jobs import selectors
from apps.jobs.services import JobNotRetryable, job_retry

from .common import page_url, perform, render_page

# The jobs a tenant's admins know by name; internal ones (search indexing,
# sweeps) are the platform's to watch.
VISIBLE_TASKS = {"reports.run_export": "Export", "notifications.send_email": "Email"}


def failed_jobs_page(request, *, site):
    rows, next_cursor = selectors.tenant_failed_jobs(request.tenant.pk, VISIBLE_TASKS,
                                                     after=request.GET.get("after", ""))
    return render_page(request, site, "failed_jobs.html", {
        "rows": [{"job": job, "kind": VISIBLE_TASKS.get(job.task_name, job.task_name),
                  "retry_url": page_url(site, "tenant-failed-job-retry", job.task_id)} for job in rows],
        "next_cursor": next_cursor,
    }, title="Failed jobs")


@require_POST
def failed_job_retry(request, task_id: str, *, site):
    job = selectors.job_of(task_id, tenant_id=request.tenant.pk)
    if job is None or job.task_name not in VISIBLE_TASKS:
        raise Http404("No such job here.")

    def retry():
        try:
            job_retry(job=job)
        except JobNotRetryable as exc:  # a refusal: a message on the page
            raise ValidationError(str(exc)) from exc
        audit_record(action="update", object_type="job", object_id=job.task_id,
                     changes={"retry": job.task_name, "state": [job.state, "queued"]})
        return job

    return perform(request, site, "tenant-failed-jobs", retry,
                   lambda j: f"{VISIBLE_TASKS[j.task_name]} sent again; this page shows it if it fails again.")
