"""Reads of analytics: usage comes from the rollups only, never the raw
events; the raw events are read only as a list to export."""

from __future__ import annotations

import datetime as dt

from django.db.models import Sum

from apps.partitions.partitions import month_start

from .models import DailyRollup, Event


def events_in_month(day: dt.date) -> int:
    start = month_start(day)
    total = DailyRollup.objects.filter(day__gte=start, day__lt=month_start(start, 1)).aggregate(n=Sum("count"))["n"]
    return int(total or 0)


def daily_usage(*, since: dt.date, until: dt.date, event_type: str | None = None):
    rollups = DailyRollup.objects.filter(day__gte=since, day__lte=until)
    if event_type:
        rollups = rollups.filter(event_type=event_type)
    return rollups.order_by("day", "event_type")


def event_list(*, event_type: str | None = None, since=None, until=None):
    """The active tenant's events, optionally of one type and within [since, until)."""
    events = Event.objects.all()
    if event_type:
        events = events.filter(event_type=event_type)
    if since:
        events = events.filter(occurred_at__gte=since)
    if until:
        events = events.filter(occurred_at__lt=until)
    return events
