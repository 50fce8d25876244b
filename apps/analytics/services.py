"""Event ingestion. Callers must have a tenant active."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.utils import timezone

from apps.billing.services import quota_enforce
from apps.caching.tenant_cache import invalidate
from apps.partitions.partitions import accepting_window, month_start_datetime
from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias

from .models import Event
from .selectors import events_in_month

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 8 * 1024
EVENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,99}$")

_ROLLUP_UPSERT = """
INSERT INTO analytics_dailyrollup (day, event_type, count)
SELECT * FROM unnest(%s::date[], %s::varchar[], %s::bigint[])
ON CONFLICT (day, event_type) DO UPDATE SET count = analytics_dailyrollup.count + EXCLUDED.count
"""


@dataclass(frozen=True)
class EventInput:
    type: str
    timestamp: dt.datetime
    properties: dict


def events_ingest(*, events: list[EventInput]) -> int:
    """Store a batch of events and fold them into the daily rollups, atomically.

    Validation is all-or-nothing: one bad event rejects the batch with its
    index, so a client never has to guess which events were kept.
    """
    if not events:
        raise ValidationError({"events": "Send at least one event."})
    if len(events) > MAX_BATCH:
        raise ValidationError({"events": f"At most {MAX_BATCH} events per request."})
    now = timezone.now()
    earliest, latest = accepting_window(now)
    errors: dict[str, str] = {}
    for index, event in enumerate(events):
        if not EVENT_TYPE.match(event.type or ""):
            errors[f"events[{index}].type"] = (
                "1-100 characters: lowercase letters, digits and _ . : -, starting with a letter or digit."
            )
        if not (earliest <= event.timestamp <= latest):
            errors[f"events[{index}].timestamp"] = f"Must be between {earliest:%Y-%m-%d} and one day from now."
        if len(json.dumps(event.properties)) > MAX_PROPERTIES_BYTES:
            errors[f"events[{index}].properties"] = f"At most {MAX_PROPERTIES_BYTES} bytes of JSON."
    if errors:
        raise ValidationError(errors)

    alias = tenant_write_alias()
    with transaction.atomic(using=alias):
        month_start = month_start_datetime(now.date())
        this_month = sum(1 for e in events if e.timestamp >= month_start)
        quota_enforce(tenant=require_active_tenant(), quota="events_per_month",
                      used=events_in_month(now.date()), adding=this_month)
        Event.objects.bulk_create(
            [Event(occurred_at=e.timestamp, event_type=e.type, properties=e.properties, received_at=now) for e in events],
            batch_size=500,
        )
        per_day = Counter((e.timestamp.astimezone(dt.UTC).date(), e.type) for e in events)
        days, types, counts = zip(*[(day, kind, n) for (day, kind), n in sorted(per_day.items())])
        with connections[alias].cursor() as cursor:
            cursor.execute(_ROLLUP_UPSERT, [list(days), list(types), list(counts)])
        invalidate("usage")
    return len(events)
