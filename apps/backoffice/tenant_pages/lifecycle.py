"""The organisation's whole data: archives of everything (with progress and
their download links) and the tenant's deletion. Owners only act here; an
admin sees the page."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from apps.accounts.models import Membership
from apps.lifecycle import selectors, services
from apps.lifecycle.models import TenantExport

from .common import REFUSALS, acting_role, back_to, perform, refusal_text, render_page

# While an archive is being written the page reloads itself (a <meta>
# refresh: the policy allows no inline script) to show its progress.
REFRESH_SECONDS = 5


class OffboardForm(forms.Form):
    confirm = forms.CharField(max_length=40, label="Type the slug to confirm")
    reason = forms.CharField(max_length=2000, required=False, label="Why (optional)",
                             widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))


def _owner_only(request) -> None:
    if acting_role(request) != Membership.Role.OWNER:
        raise PermissionDenied("Only an owner may do this.")


def lifecycle_page(request, *, site, form=None, status=200):
    exports = list(services.export_list(tenant=request.tenant)[:20])
    rows = [{
        "export": e, "percent": selectors.export_percent(e), "stalled": selectors.export_stalled(e),
        "download_url": services.download_url(request.tenant, e) if e.status == TenantExport.Status.DONE else None,
    } for e in exports]
    active = any(e.status in (TenantExport.Status.PENDING, TenantExport.Status.RUNNING) for e in exports)
    return render_page(request, site, "lifecycle.html", {
        "rows": rows, "form": form or OffboardForm(), "is_owner": acting_role(request) == Membership.Role.OWNER,
        "grace_days": services.grace_period().days, "refresh_seconds": REFRESH_SECONDS if active else None,
    }, title="Data and deletion", status=status)


@require_POST
def tenant_export_create(request, *, site):
    def create():
        _owner_only(request)
        return services.export_request(tenant=request.tenant, requested_by_id=request.user.pk)

    return perform(request, site, "tenant-lifecycle", create,
                   lambda e: "An archive of all of this organisation's data was requested; this page shows its "
                             "progress and its download link when it is ready.")


@require_POST
def offboard(request, *, site):
    """Answered here, not by a redirect: from now on the tenant's host refuses every request."""
    if acting_role(request) != Membership.Role.OWNER:
        return back_to(site, "tenant-lifecycle", request=request, error="Only an owner may delete the organisation.")
    form = OffboardForm(request.POST)
    if not form.is_valid() or form.cleaned_data["confirm"] != request.tenant.slug:
        messages.error(request, f"Type '{request.tenant.slug}' to confirm.")
        return lifecycle_page(request, site=site, form=form, status=400)
    try:
        offboarding = services.offboard_request(
            tenant=request.tenant, requested_as="owner", requested_by_id=request.user.pk,
            requested_by=request.user.email, reason=form.cleaned_data.get("reason", ""))
    except REFUSALS as exc:
        return back_to(site, "tenant-lifecycle", request=request, error=refusal_text(exc))
    request.current_app = site.name
    return TemplateResponse(request, "tenant_admin/offboarded.html", {
        **site.each_context(request), "title": "Deleted", "tenant": request.tenant, "offboarding": offboarding})
