"""Exports: their status and progress, a new request, and the signed
download link of a finished one (the same link the API and the email give)."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.views.decorators.http import require_POST

from apps.accounts.selectors import user_emails
from apps.reports import selectors, services
from apps.reports.models import ExportRequest

from .common import form_error_text, perform, render_page
from .forms import ExportForm

PAGE_SIZE = 25
# While an export is pending or running the page reloads itself (a <meta>
# refresh: the policy allows no inline script) to show its progress.
REFRESH_SECONDS = 5


def exports_page(request, *, site, form=None, status=200):
    page = Paginator(selectors.export_list(), PAGE_SIZE).get_page(request.GET.get("page"))
    exports = list(page)
    emails = user_emails(user_ids=[e.requested_by_id for e in exports])
    rows = [{
        "export": e, "status": selectors.export_status_label(e),
        "requested_by": emails.get(e.requested_by_id, ""),
        "percent": round(100 * e.rows_done / e.rows_total) if e.rows_total else None,
        "download_url": services.download_url(request.tenant, e) if e.status == ExportRequest.Status.DONE else None,
    } for e in exports]
    active = any(e.status in (ExportRequest.Status.PENDING, ExportRequest.Status.RUNNING) for e in exports)
    return render_page(request, site, "exports.html", {
        "rows": rows, "page": page, "form": form or ExportForm(),
        "refresh_seconds": REFRESH_SECONDS if active else None,
    }, title="Exports", status=status)


class _ExportRequests:
    """Stands for the API's export endpoint when choosing rate-limit buckets."""

    rate_scope = "exports"


def _export_budget_left(request) -> int | None:
    """None when a request may pass the tenant's buckets for export requests
    (the API's: the plan rate, and the lower share for exports), else the
    seconds to wait. Redis-bound with a local fallback, like the API's."""
    from apps.ratelimit import buckets
    from apps.ratelimit.selectors import tenant_rate_limit
    from apps.ratelimit.throttles import request_buckets

    _, per_minute = tenant_rate_limit(request.tenant)
    checks, _ = request_buckets(request, _ExportRequests, request.tenant, per_minute)
    decision = buckets.tightest(buckets.take_all(checks))
    return None if decision.allowed else max(1, decision.retry_after)


@require_POST
def export_create(request, *, site):
    form = ExportForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_error_text(form))
        return exports_page(request, site=site, form=form, status=400)
    # The page is no way around the API's limit on export requests (each
    # one is a job on the shared exports queue).
    wait = _export_budget_left(request)
    if wait is not None:
        messages.error(request, f"Too many export requests for now; try again in {wait} seconds.")
        return exports_page(request, site=site, form=form, status=429)
    return perform(request, site, "tenant-exports",
                   lambda: services.export_request(kind=form.cleaned_data["kind"], format=form.cleaned_data["format"],
                                                   filters={}, requested_by_id=request.user.pk),
                   lambda e: f"Export of {e.kind} as {e.format.upper()} requested; "
                             "this page shows its progress and its download link when it is ready.")
