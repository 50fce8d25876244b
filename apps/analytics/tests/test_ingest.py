"""Ingest by COPY: what is stored, what is refused, idempotency and isolation."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.analytics.models import DailyRollup, Event
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


def now_iso() -> str:
    return timezone.now().isoformat().replace("+00:00", "Z")


def test_copied_rows_keep_their_properties_exactly(api, alpha):
    properties = {"path": "C:\\temp\\new", "quote": 'say "hi"\ttab\nline', "emoji": "é✓", "nested": {"a": [1, None]},
                  "shows": "\\u0000 is only text here"}
    client = api(alpha)
    response = client.post("events", {"events": [{"type": "file.saved", "timestamp": now_iso(),
                                                   "properties": properties}, {"type": "bare", "timestamp": now_iso()}]})
    assert response.status_code == 202, response.content
    with tenant_activated(alpha):
        stored = {e.event_type: e.properties for e in Event.objects.all()}
    assert stored == {"file.saved": properties, "bare": {}}


@pytest.mark.parametrize("properties", [{"k": "a\x00b"}, {"a\x00": 1}, {"deep": [{"x": "\ud800"}]}])
def test_text_that_jsonb_cannot_hold_is_a_400_naming_the_event(api, alpha, properties):
    response = api(alpha).post("events", {"events": [{"type": "ok", "timestamp": now_iso()},
                                                      {"type": "ok", "timestamp": now_iso(), "properties": properties}]})
    assert response.status_code == 400
    assert "events[1].properties" in response.json()["errors"]


@pytest.mark.parametrize("body", [[], {"events": "x"}, {"events": [1]}, {"events": [], "other": 1},
                                  {"events": [{"type": 5, "timestamp": "2026-01-01T00:00:00Z"}]},
                                  {"events": [{"type": "ok"}]},
                                  {"events": [{"type": "ok", "timestamp": "2026-11-28T12:00:00Z", "properties": None}]},
                                  {"events": [{"type": None, "timestamp": "2026-11-28T12:00:00Z"}]}])
def test_malformed_bodies_are_problem_400s(api, alpha, body):
    response = api(alpha).post("events", body)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")


def test_an_idempotency_key_replays_without_counting_twice(api, alpha):
    client = api(alpha)
    batch = {"events": [{"type": "signup", "timestamp": now_iso()}] * 5}
    first = client.post("events", batch, **{"Idempotency-Key": "ingest-1"})
    again = client.post("events", batch, **{"Idempotency-Key": "ingest-1"})
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    with tenant_activated(alpha):
        assert Event.objects.count() == 5
        assert DailyRollup.objects.get(event_type="signup").count == 5


def test_a_tenants_events_stay_in_its_schema(api, alpha, gamma):
    api(alpha).post("events", {"events": [{"type": "alpha.only", "timestamp": now_iso()}] * 3})
    with tenant_activated(gamma):
        assert not Event.objects.filter(event_type="alpha.only").exists()
        assert not DailyRollup.objects.filter(event_type="alpha.only").exists()
    assert api(gamma).get("usage/events").json() == []


def test_a_batch_nested_too_deeply_is_a_400_not_a_500(api, alpha):
    deep: dict = {}
    for _ in range(40):
        deep = {"x": deep}
    response = api(alpha).post("events", {"events": [{"type": "ok", "timestamp": now_iso(), "properties": deep}]})
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]
    raw = api(alpha).post("events", "[" * 5000)
    assert raw.status_code == 400


@pytest.mark.parametrize("events", [
    [{"type": "a", "timestamp": "2026-01-31T12:00:00Z", "properties": {"k": 1}}, {"type": "b", "timestamp": "2026-01-31"}],
    [{"type": "a", "timestamp": "2026-01-31T12:00:00"}],  # naive: the API's UTC
    [{"type": "a", "timestamp": "2026-01-31T12:00:00+05:30", "properties": {}}],
])
def test_the_fast_pass_reads_a_batch_as_the_full_pass_does(events):
    from apps.analytics import services

    fast = services.events_parse({"events": events})
    assert fast == services._events_parse_reporting({"events": events})
    assert all(event.timestamp.tzinfo is not None for event in fast)


@pytest.mark.parametrize("body, field", [
    ({"events": [{"type": "a", "timestamp": "31/01/2026"}]}, "events[0].timestamp"),
    ({"events": [{"type": 1, "timestamp": "2026-01-31T12:00:00Z"}]}, "events[0].type"),
    ({"events": [{"type": "a", "timestamp": "2026-01-31T12:00:00Z", "properties": None}]}, "events[0].properties"),
    ({"events": [{"type": "a", "timestamp": "2026-01-31T12:00:00Z", "x": 1}]}, "events[0].x"),
    ({"events": [], "extra": 1}, "extra"),
])
def test_what_the_fast_pass_refuses_is_named_by_the_full_pass(body, field):
    from django.core.exceptions import ValidationError

    from apps.analytics import services

    with pytest.raises(ValidationError) as raised:
        services.events_parse(body)
    assert field in raised.value.message_dict
