"""Event ingestion. Callers must have a tenant active.

A batch of up to 1,000 events is one request, so the cost per event is what
matters: the batch is validated in one plain pass (no framework field objects
per event), written with one COPY into the partitioned table (PostgreSQL
routes each row to its month's partition, or the DEFAULT one) and folded into
the daily rollups with one set-wise upsert, all in one transaction (with the
Idempotency-Key record, when the API view opened one around it).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.billing.services import quota_enforce
from apps.partitions.partitions import accepting_window, month_start_datetime
from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias
from apps.tenancy.tenant_cache import invalidate

from .selectors import events_in_month

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 8 * 1024
EVENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,99}$")
EVENT_FIELDS = frozenset({"type", "timestamp", "properties"})
# A NUL escape in JSON text (\u0000 after an even number of backslashes):
# jsonb cannot store it. Text that merely shows a backslash and "u0000" is fine.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# One encoder for every event: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
# Its C core, called directly: JSONEncoder.encode and .iterencode add two
# Python frames and a rebuild of this closure per call, about 1 us an event.
# The arguments are the ones iterencode passes for the options above (no
# circular check, NaN allowed as json.dumps does, str keys as is).
_encode_chunks = (json.encoder.c_make_encoder(
    None, _JSON.default, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    if json.encoder.c_make_encoder is not None else None)

_COPY_EVENTS = "COPY analytics_event (occurred_at, event_type, properties, received_at) FROM STDIN"

_ROLLUP_UPSERT = """
INSERT INTO analytics_dailyrollup (day, event_type, count)
SELECT * FROM unnest(%s::date[], %s::varchar[], %s::bigint[])
ON CONFLICT (day, event_type) DO UPDATE SET count = analytics_dailyrollup.count + EXCLUDED.count
"""

TYPE_RULE = "1-100 characters: lowercase letters, digits and _ . : -, starting with a letter or digit."


class EventInput(NamedTuple):  # a tuple: a thousand per batch are made cheaply
    type: str
    timestamp: dt.datetime
    properties: dict


def events_parse(payload) -> list[EventInput]:
    """A request body ``{"events": [{"type", "timestamp", "properties"?}, ...]}``
    -> events, or a ValidationError naming every bad field as
    ``events[<index>].<field>``. Checks shape and types; ``events_ingest``
    checks the business rules (type pattern, window, size)."""
    # Fast path for a well-formed batch: exact type checks only (what a JSON
    # parser produces) and no error bookkeeping. Anything it does not accept
    # at once goes through the full pass below, which names every bad field.
    raw = payload.get("events") if type(payload) is dict and len(payload) == 1 else None
    if type(raw) is list:
        events: list[EventInput] = []
        append, fields, parse, utc = events.append, EVENT_FIELDS, dt.datetime.fromisoformat, dt.UTC
        for item in raw:
            if type(item) is not dict or not item.keys() <= fields:
                break
            kind, stamp, properties = item.get("type"), item.get("timestamp"), item.get("properties", _MISSING)
            if type(kind) is not str or type(stamp) is not str:
                break
            try:
                when = parse(stamp)
            except ValueError:
                break
            if properties is _MISSING:
                properties = {}
            elif type(properties) is not dict:
                break
            append(EventInput(kind, when if when.tzinfo is not None else when.replace(tzinfo=utc), properties))
        else:
            return events
    return _events_parse_reporting(payload)


_MISSING = object()


def _events_parse_reporting(payload) -> list[EventInput]:
    if not isinstance(payload, dict):
        raise ValidationError({"events": "Send a JSON object with a list of events."})
    errors: dict[str, str] = {f"{name}": "Unknown field." for name in sorted(set(payload) - {"events"})}
    raw = payload.get("events")
    if not isinstance(raw, list):
        errors["events"] = "Send a list of events."
        raise ValidationError(errors)
    events: list[EventInput] = []
    for index, item in enumerate(raw):
        where = f"events[{index}]"
        if not isinstance(item, dict):
            errors[where] = "Must be an object with type, timestamp and properties."
            continue
        if not item.keys() <= EVENT_FIELDS:
            for name in sorted(set(item) - EVENT_FIELDS):
                errors[f"{where}.{name}"] = "Unknown field."
        kind, stamp, properties = item.get("type"), item.get("timestamp"), item.get("properties")
        if not isinstance(kind, str):
            errors[f"{where}.type"] = "Required: a string."
        when = None
        if not isinstance(stamp, str):
            errors[f"{where}.timestamp"] = "Required: an ISO 8601 date and time."
        else:
            when = _parse_timestamp(stamp)
            if when is None:
                errors[f"{where}.timestamp"] = "Must be an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z."
            elif when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)  # the API's time zone
        if "properties" not in item:
            properties = {}
        elif not isinstance(properties, dict):  # null too: the schema says an object
            errors[f"{where}.properties"] = "Must be a JSON object."
        if not errors:
            events.append(EventInput(type=kind, timestamp=when, properties=properties))
    if errors:
        raise ValidationError(errors)
    return events


def _parse_timestamp(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)  # ISO 8601 with "Z" too, in C
    except ValueError:
        pass
    try:
        return parse_datetime(text)  # the forms Django's own parser accepts besides
    except ValueError:
        return None


def _properties_json(properties: dict) -> tuple[str | None, int]:
    """The stored JSON text and its size in bytes; None when jsonb cannot
    hold it (NUL, or an unpaired surrogate anywhere, keys included)."""
    text = "".join(_encode_chunks(properties, 0)) if _encode_chunks is not None else _JSON.encode(properties)
    if "\\u0000" in text and _JSON_NUL.search(text):
        return None, 0
    try:
        return text, (len(text) if text.isascii() else len(text.encode()))
    except UnicodeEncodeError:
        return None, 0


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
    received = now.isoformat()
    errors: dict[str, str] = {}
    lines: list[str] = []
    per_day: Counter = Counter()
    type_ok, utc, line = EVENT_TYPE.match, dt.UTC, lines.append
    for index, event in enumerate(events):
        if not type_ok(event.type or ""):
            errors[f"events[{index}].type"] = TYPE_RULE
        if not (earliest <= event.timestamp <= latest):
            errors[f"events[{index}].timestamp"] = f"Must be between {earliest:%Y-%m-%d} and one day from now."
        text, size = _properties_json(event.properties)
        if text is None:
            errors[f"events[{index}].properties"] = "Text in this object (keys included) must not contain the NUL " \
                                                    "character or an unpaired surrogate."
        elif size > MAX_PROPERTIES_BYTES:
            errors[f"events[{index}].properties"] = f"At most {MAX_PROPERTIES_BYTES} bytes of JSON."
        if errors:
            continue
        when = event.timestamp if event.timestamp.tzinfo is utc else event.timestamp.astimezone(utc)
        # COPY's text format: backslash is its escape character. JSON text has
        # no raw tab, newline or carriage return (the encoder escapes them).
        if "\\" in text:
            text = text.replace("\\", "\\\\")
        line(f"{when.isoformat()}\t{event.type}\t{text}\t{received}\n")
        per_day[(when.date(), event.type)] += 1
    if errors:
        raise ValidationError(errors)

    alias = tenant_write_alias()
    month_start = month_start_datetime(now.date())
    this_month = sum(1 for e in events if e.timestamp >= month_start)
    with transaction.atomic(using=alias):
        quota_enforce(tenant=require_active_tenant(), quota="events_per_month",
                      used=events_in_month(now.date()), adding=this_month)
        days, types, counts = zip(*[(day, kind, n) for (day, kind), n in sorted(per_day.items())])
        # Django's cursor sets the tenant's search_path (django-tenants) before
        # handing out psycopg's cursor, so the unqualified table is the tenant's.
        with connections[alias].cursor() as cursor:
            with cursor.cursor.copy(_COPY_EVENTS) as copy:
                copy.write("".join(lines))
            cursor.execute(_ROLLUP_UPSERT, [list(days), list(types), list(counts)])
        invalidate("usage")
    return len(events)
