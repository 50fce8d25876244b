"""Event ingestion and usage."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import Plan

pytestmark = pytest.mark.django_db


def iso(when: dt.datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def test_ingest_updates_the_daily_rollups_incrementally(api, alpha):
    client = api(alpha, via="key", scopes=["write"])
    now = timezone.now()
    batch = [{"type": "page.view", "timestamp": iso(now)}] * 3 + [{"type": "signup", "timestamp": iso(now), "properties": {"plan": "pro"}}]
    assert client.post("events", {"events": batch}).json() == {"accepted": 4}
    assert client.post("events", {"events": batch[:1]}).status_code == 202
    rows = {(r["event_type"], r["count"]) for r in client.get("usage/events").json()}
    assert rows == {("page.view", 4), ("signup", 1)}
    assert client.get("usage").json()["quotas"]["events_per_month"]["used"] == 5


def test_usage_reads_the_rollups_not_the_raw_events(api, alpha):
    client = api(alpha)
    client.post("events", {"events": [{"type": "x", "timestamp": iso(timezone.now())}]})
    with CaptureQueriesContext(connections["shard_main"]) as queries:
        assert client.get("usage/events").status_code == 200
        assert client.get("usage").status_code == 200
    assert not [q for q in queries.captured_queries if "analytics_event" in q["sql"]]


@pytest.mark.parametrize(
    ("event", "field"),
    [({"type": "Bad Type", "timestamp": "2026-01-01T00:00:00Z"}, "type"),
     ({"type": "ok", "timestamp": "1999-01-01T00:00:00Z"}, "timestamp"),
     ({"type": "ok", "timestamp": "not a date"}, "timestamp"),
     ({"type": "ok", "timestamp": "2026-01-01T00:00:00Z", "properties": "nope"}, "properties"),
     ({"type": "ok", "timestamp": "2026-01-01T00:00:00Z", "extra": 1}, "extra")],
)
def test_a_bad_event_rejects_the_batch_naming_it(api, alpha, event, field):
    client = api(alpha)
    good = {"type": "fine", "timestamp": iso(timezone.now())}
    response = client.post("events", {"events": [good, event]})
    assert response.status_code == 400
    assert field in str(response.json()["errors"])
    assert client.get("usage").json()["quotas"]["events_per_month"]["used"] == 0


def test_batch_limits(api, alpha):
    client = api(alpha)
    now = iso(timezone.now())
    assert client.post("events", {"events": []}).status_code == 400
    assert client.post("events", {"events": [{"type": "x", "timestamp": now}] * 1001}).status_code == 400
    assert client.post("events", {"events": [{"type": "x", "timestamp": now}] * 1000}).status_code == 202


def test_event_quota(api, alpha):
    Plan.objects.filter(code="free").update(max_events_per_month=3)
    client = api(alpha)
    now = iso(timezone.now())
    assert client.post("events", {"events": [{"type": "x", "timestamp": now}] * 3}).status_code == 202
    over = client.post("events", {"events": [{"type": "x", "timestamp": now}]})
    assert over.status_code == 403 and over.json()["quota"] == "events_per_month"


def test_usage_event_range_errors(api, alpha):
    client = api(alpha)
    assert client.get("usage/events?since=2026-02-01&until=2026-01-01").status_code == 400
    assert client.get("usage/events?since=2020-01-01&until=2026-01-01").status_code == 400
    assert client.get("usage/events?since=yesterday").status_code == 400
