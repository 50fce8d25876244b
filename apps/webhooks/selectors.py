"""Reads of webhook endpoints, events and deliveries. Callers have a tenant
active: every query runs in that tenant's schema, and nowhere else."""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch
from django.utils import timezone

from .models import EVENT_ID_MARK, Attempt, Delivery, Endpoint, Event


def endpoints():
    return Endpoint.objects.order_by("created_at", "pk")


def endpoint_by_id(endpoint_id) -> Endpoint | None:
    try:
        return endpoints().filter(pk=int(endpoint_id)).first()
    except (TypeError, ValueError):
        return None


def retention_start() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.WEBHOOKS_EVENT_RETENTION_SECONDS)


def events(*, event_type: str | None = None, state: str | None = None, endpoint_id: int | None = None):
    """Events of the retention window (30 days), newest first; ``state``
    keeps those with a delivery in that state (to ``endpoint_id`` if given)."""
    rows = Event.objects.filter(created_at__gte=retention_start())
    if event_type:
        rows = rows.filter(type=event_type)
    if state or endpoint_id:
        deliveries = Delivery.objects.filter(event=OuterRef("pk"))
        if state:
            deliveries = deliveries.filter(state=state)
        if endpoint_id:
            deliveries = deliveries.filter(endpoint_id=endpoint_id)
        rows = rows.filter(Exists(deliveries))
    return rows.prefetch_related(Prefetch("deliveries", queryset=Delivery.objects.order_by("endpoint_id")))


def parse_event_id(public_id: str) -> uuid.UUID | None:
    if not isinstance(public_id, str) or not public_id.startswith(EVENT_ID_MARK):
        return None
    try:
        return uuid.UUID(hex=public_id.removeprefix(EVENT_ID_MARK))
    except ValueError:
        return None


def event_by_public_id(public_id: str) -> Event | None:
    """The event with its deliveries and every attempt, or None (unknown, malformed, or past retention)."""
    event_id = parse_event_id(public_id)
    if event_id is None:
        return None
    attempts = Prefetch("attempt_set", queryset=Attempt.objects.order_by("number"))
    deliveries = Prefetch("deliveries", queryset=Delivery.objects.order_by("endpoint_id").prefetch_related(attempts))
    return Event.objects.filter(pk=event_id, created_at__gte=retention_start()).prefetch_related(deliveries).first()


def deliveries_of(endpoint: Endpoint, *, state: str | None = None):
    rows = Delivery.objects.filter(endpoint=endpoint, created_at__gte=retention_start()).select_related("event")
    if state:
        rows = rows.filter(state=state)
    return rows


def event_state(event: Event) -> str:
    """One word for an event's deliveries: none, pending, failed or delivered."""
    states = {d.state for d in event.deliveries.all()}
    if not states:
        return "none"
    if Delivery.State.WAITING in states:
        return Delivery.State.PENDING  # to a tenant, waiting its turn is pending
    for state in (Delivery.State.PENDING, Delivery.State.FAILED):
        if state in states:
            return state
    return Delivery.State.DELIVERED


def endpoint_summary(endpoint: Endpoint) -> dict:
    """Counts of the endpoint's deliveries by state (retention window)."""
    from django.db.models import Count

    rows = (Delivery.objects.filter(endpoint=endpoint, created_at__gte=retention_start())
            .values_list("state").annotate(n=Count("id")).order_by())
    return {state: n for state, n in rows}
