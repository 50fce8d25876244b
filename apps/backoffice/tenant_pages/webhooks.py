"""Webhooks: endpoints (create with the secret shown once, enable, disable,
rotate, delete, replay what failed), and the events of the last 30 days with
every delivery attempt (resend one).

A new or rotated secret is shown on the answer to the POST that made it and
nowhere else; like the API key form, the form carries a one-off submission
key, so reloading that answer makes no second secret."""

from __future__ import annotations

import datetime as dt
import secrets

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.idempotency.services import form_submission_claim, form_submission_release
from apps.tenancy.routers import tenant_write_alias
from apps.webhooks import selectors, services
from apps.webhooks.catalogue import ALL, EVENT_TYPES
from apps.webhooks.models import Delivery

from .common import REFUSALS, back_to, form_error_text, perform, refusal_text, render_page

PAGE_SIZE = 25


class EndpointForm(forms.Form):
    url = forms.CharField(max_length=2000, label="URL", widget=forms.URLInput(attrs={"size": 60}))
    event_types = forms.MultipleChoiceField(choices=[(ALL, "every event type")] + [(t, t) for t in EVENT_TYPES],
                                            widget=forms.CheckboxSelectMultiple, label="Events", initial=[ALL])
    description = forms.CharField(max_length=200, required=False, label="Description")
    submission = forms.CharField(widget=forms.HiddenInput, max_length=64, label="Form")

    @classmethod
    def fresh(cls) -> EndpointForm:
        return cls(initial={"submission": secrets.token_urlsafe(18)})


class OnceForm(forms.Form):
    submission = forms.CharField(widget=forms.HiddenInput, max_length=64, label="Form")


class ReplayForm(forms.Form):
    since = forms.DateField(label="Failed since (day)", widget=forms.DateInput(attrs={"type": "date"}))


class EventFilterForm(forms.Form):
    type = forms.ChoiceField(choices=[("", "any")] + [(t, t) for t in EVENT_TYPES], required=False, label="Type")
    state = forms.ChoiceField(choices=[("", "any")] + Delivery.State.choices, required=False, label="Delivery")


def _endpoint_or_404(endpoint_id: int):
    endpoint = selectors.endpoint_by_id(endpoint_id)
    if endpoint is None:
        raise Http404("No such webhook endpoint in this organisation.")
    return endpoint


def webhooks_page(request, *, site, form=None, shown=None, status=200):
    # Each rotate button has its own one-off key: rotating one endpoint does not spend another's.
    rows = [{"endpoint": e, "counts": selectors.endpoint_summary(e), "once": secrets.token_urlsafe(18)}
            for e in selectors.endpoints()]
    return render_page(request, site, "webhooks.html", {
        "rows": rows, "form": form or EndpointForm.fresh(), "shown": shown,
        "replay_form": ReplayForm(initial={"since": timezone.localdate()}),
        "limit": services.endpoint_limit(request.tenant),
    }, title="Webhooks", status=status)


def _once(request, submission: str) -> dict:
    return {"alias": tenant_write_alias(request.tenant), "client": f"tenant-admin:{request.user.pk}",
            "key": submission}


@require_POST
def webhook_create(request, *, site):
    form = EndpointForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_error_text(form))
        return webhooks_page(request, site=site, form=form, status=400)
    once = _once(request, form.cleaned_data["submission"])
    if not form_submission_claim(**once):
        messages.warning(request, "That form was sent already: its secret was shown once, then. "
                                  "If it was not copied, rotate the endpoint's secret.")
        return back_to(site, "tenant-webhooks")
    try:
        made = services.endpoint_create(url=form.cleaned_data["url"], event_types=form.cleaned_data["event_types"],
                                        description=form.cleaned_data["description"], created_by_id=request.user.pk)
    except REFUSALS as exc:
        form_submission_release(**once)
        messages.error(request, refusal_text(exc))
        return webhooks_page(request, site=site, form=form, status=400)
    # Rendered, not redirected: the secret must not wait in a session or a URL.
    messages.success(request, f"Endpoint {made.endpoint.pk} created.")
    return webhooks_page(request, site=site, shown=made)


@require_POST
def webhook_rotate(request, endpoint_id: int, *, site):
    endpoint = _endpoint_or_404(endpoint_id)
    form = OnceForm(request.POST)
    if not form.is_valid() or not form_submission_claim(**_once(request, form.cleaned_data["submission"])):
        messages.warning(request, "That rotation was sent already; its secret was shown once, then.")
        return back_to(site, "tenant-webhooks")
    made = services.endpoint_rotate_secret(endpoint=endpoint)
    messages.success(request, f"Endpoint {endpoint.pk} has a new secret; the previous one signs too until "
                              f"{made.endpoint.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC.")
    return webhooks_page(request, site=site, shown=made)


@require_POST
def webhook_toggle(request, endpoint_id: int, *, site):
    endpoint = _endpoint_or_404(endpoint_id)
    enable = not endpoint.enabled
    return perform(request, site, "tenant-webhooks",
                   lambda: services.endpoint_update(endpoint=endpoint, changes={"enabled": enable}),
                   lambda e: f"Endpoint {e.pk} {'enabled: its waiting deliveries resume' if enable else 'disabled'}.")


@require_POST
def webhook_delete(request, endpoint_id: int, *, site):
    endpoint = _endpoint_or_404(endpoint_id)
    return perform(request, site, "tenant-webhooks", lambda: services.endpoint_delete(endpoint=endpoint),
                   lambda _: f"Endpoint {endpoint.pk} and its deliveries were deleted.")


@require_POST
def webhook_replay(request, endpoint_id: int, *, site):
    endpoint = _endpoint_or_404(endpoint_id)
    form = ReplayForm(request.POST)
    if not form.is_valid():
        return back_to(site, "tenant-webhooks", request=request, error=form_error_text(form))
    since = dt.datetime.combine(form.cleaned_data["since"], dt.time(), tzinfo=dt.UTC)
    return perform(request, site, "tenant-webhooks",
                   lambda: services.endpoint_replay(endpoint=endpoint, since=since),
                   lambda count: f"{count} failed deliveries to endpoint {endpoint.pk} queued again.")


def webhook_events_page(request, *, site):
    flt = EventFilterForm(request.GET or None)
    values = flt.cleaned_data if flt.is_valid() else {}
    rows = selectors.events(event_type=values.get("type") or None, state=values.get("state") or None)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    events = [{"event": e, "state": selectors.event_state(e)} for e in page]
    query = "&".join(f"{k}={v}" for k, v in values.items() if v)
    return render_page(request, site, "webhook_events.html", {"events": events, "page": page, "flt": flt,
                                                              "query": query}, title="Webhook events")


def webhook_event_page(request, event_id: str, *, site):
    event = selectors.event_by_public_id(event_id)
    if event is None:
        raise Http404("No such event in this organisation (events are kept 30 days).")
    return render_page(request, site, "webhook_event.html", {
        "event": event, "state": selectors.event_state(event), "endpoints": list(selectors.endpoints()),
    }, title=f"Event {event.public_id}")


@require_POST
def webhook_event_resend(request, event_id: str, *, site):
    event = selectors.event_by_public_id(event_id)
    if event is None:
        raise Http404("No such event in this organisation.")
    endpoint = selectors.endpoint_by_id(request.POST.get("endpoint")) if request.POST.get("endpoint") else None
    return perform(request, site, "tenant-webhook-events",
                   lambda: services.event_resend(event=event, endpoint=endpoint),
                   lambda count: f"Event {event.public_id} queued again ({count} deliveries).")
