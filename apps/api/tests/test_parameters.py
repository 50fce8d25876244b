"""What the schema forbids, the server refuses: query parameters, headers and
bulk items, each checked against the declaration the schema is made from."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from apps.api.serializers import RFC3339_DATE, RFC3339_DATE_TIME

pytestmark = pytest.mark.django_db


def refused(response, *names):
    """A 400 problem naming each of ``names`` with a rule."""
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(names) <= set(body["errors"]), body
    assert all(body["errors"][name] for name in names)
    return body


# --- the query parameters the fuzzer found accepted ------------------------------


@pytest.mark.parametrize("q", [
    "a" * 200 + "   ",  # over maxLength as sent; 200 once trimmed
    "a" * 201,
    " \t ",  # the pattern: not blank
    "a\x00b",  # the pattern: no NUL
])
def test_search_refuses_q_beyond_its_pattern_or_length(api, alpha, q):
    body = refused(api(alpha).get(f"search?q={quote(q)}"), "q")
    assert body["type"].endswith("/invalid-parameters") and "q" in body["detail"]


@pytest.mark.parametrize("value", ["2026-01-02", "20260102T030405Z", "2026-01-02 03:04:05Z", "2026-01-02T03:04Z",
                                   "2026-01-02T03:04:05", "2026-01-02t03:04:05z", "2026-W01-5T03:04:05Z",
                                   "2026-01-02T03:04:05Z\n", "yesterday"])
def test_document_list_refuses_created_after_that_is_no_date_time(api, alpha, value):
    body = refused(api(alpha).get(f"documents?created_after={quote(value)}"), "created_after")
    assert "RFC 3339" in body["errors"]["created_after"][0]


@pytest.mark.parametrize("value", ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123456789+05:30",
                                   "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_document_list_takes_every_rfc3339_date_time(api, alpha, value):
    # The last two lie beyond the calendar's ends in UTC: still valid bounds.
    response = api(alpha).get(f"documents?created_after={quote(value)}")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("value", ["20261127", "2026-W48-5", "2026-11-27T00:00:00Z", "2026-11-7", "today"])
def test_usage_events_refuses_since_that_is_no_date(api, alpha, value):
    refused(api(alpha).get(f"usage/events?since={quote(value)}&until=2026-11-30"), "since")


@pytest.mark.parametrize("cursor", ["a" * 499 + "  ", "a" * 501, "not a cursor", "abc\n"])
def test_audit_refuses_a_cursor_beyond_its_length_or_alphabet(api, alpha, cursor):
    refused(api(alpha, role="admin").get(f"audit?cursor={quote(cursor)}"), "cursor")


def test_the_patterns_are_the_ones_the_schema_states(schema):
    params = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/audit"]["get"]["parameters"]}
    assert params["since"]["pattern"] == RFC3339_DATE_TIME.pattern and params["since"]["format"] == "date-time"
    assert params["cursor"]["maxLength"] == 500
    usage = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/usage/events"]["get"]["parameters"]}
    assert usage["since"]["pattern"] == RFC3339_DATE.pattern and usage["since"]["format"] == "date"


@pytest.mark.parametrize("value", ["+5", "5.5", " 5", "1_0", "\u0665", "five", "5e0"])
def test_integers_in_the_query_are_decimal_digits(api, alpha, value):
    refused(api(alpha).get(f"documents?page_size={quote(value)}"), "page_size")


def test_an_integer_may_be_written_as_a_number_with_a_zero_fraction(api, alpha):
    assert api(alpha).get("documents?page_size=5.0").status_code == 200


@pytest.mark.parametrize("value, accepted", [(5, True), (5.0, True), (5.5, False), ("5", False), (True, False)])
def test_integers_in_a_body_are_json_numbers(value, accepted):
    from rest_framework import serializers

    from apps.api.serializers import StrictSerializer

    class Body(StrictSerializer):
        count = serializers.IntegerField(max_value=10**20)

    body = Body(data={"count": value})
    assert body.is_valid() is accepted, body.errors
    assert not accepted or body.validated_data["count"] == 5


# --- parameters nobody declared ---------------------------------------------------


@pytest.mark.parametrize("path", ["documents?colour=red", "me?verbose=1", "usage?format=json",
                                  "search?q=x&limit=5&lang=en"])
def test_unknown_query_parameters_are_refused_by_name(api, alpha, path):
    name = path.rsplit("&", 1)[-1].split("?")[-1].split("=")[0]
    body = refused(api(alpha).get(path), name)
    assert name in body["detail"]


def test_a_post_takes_no_query_parameters(api, alpha):
    refused(api(alpha).post("documents?draft=1", {"title": "x"}), "draft")


def test_a_parameter_given_twice_is_refused(api, alpha):
    body = refused(api(alpha).get("search?q=one&q=two"), "q")
    assert "once" in body["errors"]["q"][0]


def test_head_checks_the_query_as_get_does(api, alpha):
    client = api(alpha)
    assert client.client.head("/api/v1/documents?status=draft").status_code == 200
    assert client.client.head("/api/v1/documents?status=gone").status_code == 400


def test_an_undeclared_method_is_405_whatever_the_query(api, alpha):
    assert api(alpha).client.generic("TRACE", "/api/v1/search?q=x").status_code == 405


def test_every_documented_query_parameter_is_the_validating_serializer(schema):
    """One declaration: an operation documents exactly the fields of the
    serializer its handler validates the query with, and none without one."""
    checked = 0
    for path, view, method in tenant_api_handlers():
        handler = getattr(view, method)
        declared = getattr(handler, "query_serializer", None)
        fields = set(declared().fields) if declared else set()
        operation = schema["paths"][path][method]
        documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert documented == fields, f"{method.upper()} {path}"
        checked += 1
    assert checked >= 25


def tenant_api_handlers():
    """(schema path, view class, method) of every handler under /api/v1/."""
    from apps.api.views import TenantAPIView

    def walk(patterns, prefix):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                view = getattr(entry.callback, "cls", None)
                if view is not None and issubclass(view, TenantAPIView):
                    route = prefix + str(entry.pattern)
                    path = "/" + _openapi_path(route)
                    for method in ("get", "post", "put", "patch", "delete"):
                        if hasattr(view, method):
                            yield path, view, method

    yield from walk(get_resolver("config.urls_tenant").url_patterns, "")


def _openapi_path(route: str) -> str:
    import re

    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.lstrip("^").rstrip("$"))


# --- headers ---------------------------------------------------------------------


def test_a_change_without_if_match_is_428_and_the_schema_says_so(api, alpha, schema):
    client = api(alpha)
    doc = client.post("documents", {"title": "Locked"}).json()
    missing = client.patch(f"documents/{doc['id']}", {"title": "x"})
    assert missing.status_code == 428 and missing["Content-Type"] == "application/problem+json"
    assert client.delete(f"documents/{doc['id']}").status_code == 428
    for method in ("patch", "delete"):
        operation = schema["paths"]["/api/v1/documents/{document_id}"][method]
        header = next(p for p in operation["parameters"] if p["in"] == "header" and p["name"] == "If-Match")
        assert header["required"] is True and "428" in header["description"]
        assert operation["responses"]["428"]["content"]["application/problem+json"]
        assert "If-Match" in operation["responses"]["428"]["description"]


# --- bulk items ------------------------------------------------------------------


def test_bulk_refuses_every_bad_item_by_index_and_writes_nothing(api, alpha):
    client = api(alpha, role="member")
    used = client.get("usage").json()["quotas"]["documents"]["used"]
    items = [
        {"title": "fine"},
        {"title": "tags as a boolean", "tags": True},
        {"title": "fine too", "tags": ["a"]},
        {"title": "a body matching no branch", "body": 5},
        {"title": "a body over its length as sent", "body": "x" * 999_999 + "  "},
        {"title": "a tag over its length as sent", "tags": ["t" * 50 + " "]},
    ]
    body = refused(client.post("documents/bulk", {"documents": items}), "documents")
    errors = body["errors"]["documents"]
    assert set(errors) == {"1", "3", "4", "5"}, errors
    assert set(errors["1"]) == {"tags"} and set(errors["3"]) == {"body"} and set(errors["4"]) == {"body"}
    assert client.get("usage").json()["quotas"]["documents"]["used"] == used


def test_a_valid_batch_is_written_whole(api, alpha):
    client = api(alpha, role="member")
    created = client.post("documents/bulk", {"documents": [{"title": "one", "tags": ["x"]}, {"title": "two"}]})
    assert created.status_code == 201 and created.json()["created"] == 2


def test_bulk_items_are_the_single_item_body(schema):
    items = schema["components"]["schemas"]["DocumentBulkInputRequest"]["properties"]["documents"]["items"]
    assert items == {"$ref": "#/components/schemas/DocumentInputRequest"}


@pytest.fixture(scope="module")
def schema():
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator(urlconf="config.urls_tenant", api_version="v1").get_schema(request=None, public=True)


# --- events: the service reads more forms than the schema states -----------------


@pytest.mark.parametrize("kind, stamp, field", [
    ("page.view", "{now:%Y-%m-%d %H:%M:%S}Z", "timestamp"),
    ("page.view", "{now:%Y-%m-%dT%H:%M:%S}", "timestamp"),
    ("page.view", "{now:%Y%m%dT%H%M%S}Z", "timestamp"),
    ("page.view\n", "{now:%Y-%m-%dT%H:%M:%S}Z", "type"),
])
def test_events_refuse_forms_the_schema_forbids(api, alpha, kind, stamp, field):
    from django.utils import timezone

    now = timezone.now()
    good = {"type": "page.view", "timestamp": f"{now:%Y-%m-%dT%H:%M:%S}Z"}
    bad = {"type": kind, "timestamp": stamp.format(now=now)}
    body = refused(api(alpha, role="member").post("events", {"events": [good, bad]}), f"events[1].{field}")
    assert set(body["errors"]) == {f"events[1].{field}"}


def test_events_take_any_offset(api, alpha):
    from django.utils import timezone

    stamp = timezone.localtime(timezone.now(), timezone.get_fixed_timezone(330)).isoformat(timespec="seconds")
    response = api(alpha, role="member").post("events", {"events": [{"type": "page.view", "timestamp": stamp}]})
    assert response.status_code == 202, response.content
