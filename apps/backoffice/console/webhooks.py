"""A tenant's webhooks in the operator console: its endpoints' health, and a
replay of an endpoint's failed deliveries (after the tenant fixed its
receiver and asked support), recorded like every console action.

The endpoints are read and changed with the tenant activated, through the
same services the tenant's own admin and API use."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from apps.tenancy.activation import tenant_activated

from ..models import OperatorAction
from . import selectors, services
from .forms import ReasonForm

WEBHOOK_REPLAY = OperatorAction.Kind.WEBHOOK_REPLAY


class ReplayForm(ReasonForm):
    endpoint = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    since = forms.DateField(label="Failed since (day)", widget=forms.DateInput(attrs={"type": "date"}))


def webhooks_replay(*, tenant, endpoint_id: int, since: dt.datetime, actor, reason: str):
    from apps.webhooks import selectors as hooks
    from apps.webhooks.services import endpoint_replay

    services._refuse_public(tenant)

    def do():
        with services._as_operator(actor), tenant_activated(tenant):
            endpoint = hooks.endpoint_by_id(endpoint_id)
            if endpoint is None:
                raise services.ConsoleError(f"Tenant {tenant.slug} has no webhook endpoint {endpoint_id}.")
            return {"endpoint": endpoint_id, "since": since.isoformat(),
                    "requeued": endpoint_replay(endpoint=endpoint, since=since)}

    return services._perform(kind=WEBHOOK_REPLAY, actor=actor, reason=reason, target=f"tenant {tenant.slug}",
                             tenant_id=tenant.pk, do=do, atomic=False)


def _rows(tenant) -> list[dict] | str:
    from apps.webhooks import selectors as hooks

    try:
        with tenant_activated(tenant):
            return [{"endpoint": e, "counts": hooks.endpoint_summary(e)} for e in hooks.endpoints()]
    except Exception as exc:  # the shard is down or slow: the page still answers
        return f"{type(exc).__name__}: {str(exc)[:200]}"


def tenant_webhooks(request, slug: str):
    tenant = selectors.tenant_for_console(slug)
    if tenant is None:
        raise Http404(f"No tenant '{slug}' in the console.")
    form = ReplayForm(request.POST or None)
    if request.method == "POST":
        if not request.user.is_superuser:
            raise PermissionDenied("Console actions are for platform operators (superusers).")
        if form.is_valid():
            since = dt.datetime.combine(form.cleaned_data["since"], dt.time(), tzinfo=dt.UTC)
            try:
                done = webhooks_replay(tenant=tenant, endpoint_id=form.cleaned_data["endpoint"], since=since,
                                       actor=request.user, reason=form.cleaned_data["reason"])
            except services.ConsoleError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"{done.detail['requeued']} failed deliveries queued again "
                                          f"(operator action {done.pk}).")
                return HttpResponseRedirect(reverse("console:tenant-webhooks", args=[tenant.slug]))
    rows = _rows(tenant)
    return render(request, "console/webhooks.html", {
        **admin.site.each_context(request), "title": f"Webhooks of {tenant.slug}", "tenant": tenant,
        "rows": rows if isinstance(rows, list) else [], "unavailable": rows if isinstance(rows, str) else "",
        "form": form})
