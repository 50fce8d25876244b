"""The OpenAPI schema says what the server does: every status with its
problem body, which fields a body may have, and what values they take."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from apps.api.schema import utc_days_pattern

PROBLEM = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture(scope="module")
def schema():
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator(urlconf="config.urls_tenant", api_version="v1").get_schema(request=None, public=True)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "head", "post", "put", "patch", "delete"}:
                yield f"{method.upper()} {path}", operation


def component(schema, name):
    return schema["components"]["schemas"][name]


def test_every_operation_documents_the_cross_cutting_problems(schema):
    missing = [
        f"{label} {status}"
        for label, operation in operations(schema)
        for status in ("400", "401", "403", "404", "429", "503")
        if operation["responses"].get(status, {}).get("content", {}).get("application/problem+json", {})
        .get("schema") != PROBLEM
    ]
    assert not missing
    assert len(list(operations(schema))) >= 25


def test_every_request_body_refuses_unknown_fields(schema):
    bodies = [(label, media) for label, operation in operations(schema)
              for media in operation.get("requestBody", {}).get("content", {}).values()]
    assert bodies, "no request body found: the schema is not being read"
    for label, media in bodies:
        ref = media["schema"]["$ref"].rsplit("/", 1)[1]
        body = component(schema, ref)
        variants = [component(schema, v["$ref"].rsplit("/", 1)[1]) for v in body.get("oneOf", [])] or [body]
        assert all(v["additionalProperties"] is False for v in variants), label


def test_lists_that_must_not_be_empty_say_so(schema):
    events = component(schema, "EventBatchInputRequest")["properties"]["events"]
    assert (events["minItems"], events["maxItems"]) == (1, 1000)
    assert component(schema, "DocumentBulkInputRequest")["properties"]["documents"]["minItems"] == 1
    assert component(schema, "ApiKeyInputRequest")["properties"]["scopes"]["minItems"] == 1


def test_text_says_it_may_not_be_blank_or_hold_nul(schema):
    title = re.compile(component(schema, "DocumentInputRequest")["properties"]["title"]["pattern"])
    assert title.search("A title") and not title.search("   ") and not title.search("a\x00b")
    event_type = component(schema, "EventRequest")["properties"]["type"]["pattern"]
    assert re.search(event_type, "page.view") and not re.search(event_type, "Page View")


def test_export_filters_depend_on_the_kind(schema):
    body = component(schema, "ExportCreateRequest")
    assert body["discriminator"]["mapping"] == {
        "documents": "#/components/schemas/DocumentExportInputRequest",
        "events": "#/components/schemas/EventExportInputRequest",
    }
    documents = component(schema, "DocumentExportFiltersRequest")
    events = component(schema, "EventExportFiltersRequest")
    assert set(documents["properties"]) == {"status", "tag"} and documents["additionalProperties"] is False
    assert set(events["properties"]) == {"type", "since", "until"} and events["additionalProperties"] is False
    assert events["properties"]["since"]["format"] == "date-time"


def test_event_timestamps_are_limited_to_the_accepting_window(schema):
    pattern = re.compile(component(schema, "EventRequest")["properties"]["timestamp"]["pattern"])
    today = timezone.now().date()
    first = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    assert pattern.match(f"{today}T23:59:59.5Z") and pattern.match(f"{first}T00:00:00Z")
    assert not pattern.match(f"{first - dt.timedelta(days=1)}T23:59:59Z")
    assert not pattern.match(f"{today + dt.timedelta(days=2)}T00:00:00Z")


def test_day_patterns_follow_the_calendar():
    pattern = re.compile(utc_days_pattern(dt.date(2028, 2, 1), dt.date(2028, 3, 1)))
    assert pattern.match("2028-02-29T10:00:00Z") and pattern.match("2028-03-01T00:00:00Z")
    assert not pattern.match("2028-02-30T10:00:00Z") and not pattern.match("2028-03-02T00:00:00Z")
    assert not pattern.match("2028-02-10T24:00:00Z") and not pattern.match("2028-02-10T10:00:00+01:00")


# --- the server keeps the schema's promises ------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("properties", [{"a\x00": 1}, {"k": ["x\x00"]}, {"k": {"deep": "\ud800"}}])
def test_event_properties_that_jsonb_cannot_store_are_400_not_500(api, alpha, properties):
    event = {"type": "page.view", "timestamp": timezone.now().isoformat(), "properties": properties}
    response = api(alpha, role="member").post("events", {"events": [event]})
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({"kind": "events", "filters": {"since": "yesterday"}}, "filters"),
    ({"kind": "documents", "filters": {"type": "x"}}, "filters"),
    ({"kind": "documents", "filters": {"status": "gone"}}, "filters"),
    ({"kind": "invoices"}, "kind"),
    ({}, "kind"),
])
def test_export_bodies_are_checked_against_their_kind(api, alpha, body, field):
    response = api(alpha).post("exports", body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


@pytest.mark.django_db
def test_export_times_are_stored_as_iso_text(api, alpha):
    response = api(alpha).post("exports", {"kind": "events", "filters": {"since": "2026-01-02T03:04:05Z"}})
    assert response.status_code == 202, response.content
    assert response.json()["filters"] == {"since": "2026-01-02T03:04:05+00:00"}


@pytest.mark.django_db
def test_inviting_a_member_again_is_a_conflict(api, alpha):
    admin = api(alpha, role="admin")
    response = admin.post("invitations", {"email": admin.principal.email})
    assert response.status_code == 409, response.content
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_usage_events_until_the_first_day_is_not_a_server_error(api, alpha):
    assert api(alpha).get("usage/events?until=0001-01-02").status_code == 200


@pytest.mark.django_db
def test_a_non_ascii_digit_in_if_match_is_412_not_500(api, alpha):
    client = api(alpha)
    doc = client.post("documents", {"title": "Versioned"}).json()
    assert client.patch(f"documents/{doc['id']}", {"title": "x"}, if_match='"\u00b2"').status_code == 412
