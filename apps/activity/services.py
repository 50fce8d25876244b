"""Writes to the activity log. Callers must have a tenant active."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.utils import timezone

from .models import ActivityEvent

# Partitions exist from last month to a few months ahead; events outside
# that window would have nowhere to go.
MAX_AGE = dt.timedelta(days=28)
MAX_FUTURE = dt.timedelta(days=1)


def activity_record(
    *,
    verb: str,
    actor_id: int | None = None,
    object_type: str = "",
    object_id: str | int = "",
    data: dict | None = None,
    occurred_at: dt.datetime | None = None,
) -> ActivityEvent:
    """Append one event to the active tenant's activity log."""
    now = timezone.now()
    occurred_at = occurred_at or now
    if not (now - MAX_AGE <= occurred_at <= now + MAX_FUTURE):
        raise ValidationError({"occurred_at": "An event must be from the last 28 days and not in the future."})
    return ActivityEvent.objects.create(
        verb=verb, actor_id=actor_id, object_type=object_type, object_id=str(object_id),
        data=data or {}, occurred_at=occurred_at,
    )
