"""Requests too large for the HTTP server to read: the limits fit the schema,
and the refusals are problem details, documented on every operation."""

from __future__ import annotations

import json
import re
import runpy
from types import SimpleNamespace
from urllib.parse import quote_plus

import pytest
from gunicorn.http import errors as http_errors

from config import gunicorn_workers
from tests.support import ROOT

# Characters a parameter may hold, costliest first in a URL: a 4-byte UTF-8
# character is 12 bytes percent-encoded.
CANDIDATES = ["\U0010fffd", "\uffee", "\u00e9", "+", ":", "a", "0"]
INTEGER_DIGITS = 20  # an unbounded integer parameter: int64 with its sign
PATH_PARAMETER = 100  # an id in the path, in bytes


@pytest.fixture(scope="module")
def schema():
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator(urlconf="config.urls_tenant", api_version="v1").get_schema(request=None, public=True)


@pytest.fixture
def limits(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("GUNICORN_LIMIT_REQUEST_LINE", "GUNICORN_LIMIT_REQUEST_FIELDS", "GUNICORN_LIMIT_REQUEST_FIELD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    conf = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    return SimpleNamespace(limit_request_line=conf["limit_request_line"],
                           limit_request_fields=conf["limit_request_fields"],
                           limit_request_field_size=conf["limit_request_field_size"])


def costliest_value(schema: dict) -> str:
    """The longest value, in URL bytes, that ``schema`` allows."""
    if "enum" in schema:
        return max((str(v) for v in schema["enum"]), key=lambda v: len(quote_plus(v)))
    if schema.get("type") == "integer":
        bounds = [schema[k] for k in ("minimum", "maximum") if k in schema]
        return max((str(b) for b in bounds), key=len) if len(bounds) == 2 else "-" + "9" * (INTEGER_DIGITS - 1)
    assert schema.get("type") == "string", schema
    if schema.get("format") == "date-time":
        return "2026-11-27T10:00:00.123456789+05:30"
    if schema.get("format") == "date":
        return "2026-11-27"
    length = schema.get("maxLength")
    assert length is not None, f"a text parameter without maxLength has no bounded URL: {schema}"
    pattern = re.compile(schema.get("pattern", ".*"))
    return max((c * length for c in CANDIDATES if pattern.search(c * length)), key=lambda v: len(quote_plus(v)))


def longest_request_line(method: str, path: str, operation: dict) -> int:
    query = [f"{p['name']}={quote_plus(costliest_value(p['schema']))}"
             for p in operation.get("parameters", []) if p["in"] == "query"]
    path = re.sub(r"\{\w+\}", "x" * PATH_PARAMETER, path)
    return len(f"{method.upper()} {path}?{'&'.join(query)} HTTP/1.1")


def test_every_request_line_the_schema_allows_fits_the_server_limit(schema, limits):
    lines = {f"{method.upper()} {path}": longest_request_line(method, path, operation)
             for path, item in schema["paths"].items() for method, operation in item.items()
             if method in {"get", "post", "put", "patch", "delete"}}
    assert max(lines.values()) <= limits.limit_request_line, sorted(lines.items(), key=lambda i: -i[1])[:3]
    assert lines["GET /api/v1/documents"] > 4094  # gunicorn's default would refuse valid lists


def test_the_limits_are_set_deliberately(limits):
    assert (limits.limit_request_line, limits.limit_request_fields, limits.limit_request_field_size) == (
        8190, 100, 8190)


def test_every_operation_documents_the_server_refusals(schema):
    responses = schema["components"]["responses"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                assert operation["responses"]["414"] == {"$ref": "#/components/responses/UriTooLong"}, path
                assert operation["responses"]["431"] == {
                    "$ref": "#/components/responses/RequestHeaderFieldsTooLarge"}, path
    for name in ("UriTooLong", "RequestHeaderFieldsTooLarge"):
        assert responses[name]["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"}


@pytest.mark.parametrize("exc, status", [
    (http_errors.LimitRequestLine(9000, 8190), 414),
    (http_errors.LimitRequestHeaders("limit request headers fields size"), 431),
    (http_errors.LimitRequestHeaders("limit request headers fields"), 431),
    (http_errors.InvalidRequestLine("GET /\x00"), 400),
    (http_errors.InvalidHeaderName("a b"), 400),
    (http_errors.InvalidHTTPVersion("HTTP/9"), 400),
])
def test_gunicorn_refusals_become_problem_details(exc, status, limits):
    message = gunicorn_workers.problem_message(*gunicorn_workers.refusal(exc, limits))
    head, body = message.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == "application/problem+json" and int(headers["Content-Length"]) == len(body)
    problem = json.loads(body)
    assert problem["status"] == status and problem["type"].startswith(gunicorn_workers.PROBLEM_TYPE_BASE)
    assert set(problem) == {"type", "title", "status", "detail"}


def test_faults_that_are_not_the_clients_stay_gunicorns(limits):
    assert gunicorn_workers.refusal(RuntimeError("boom"), limits) is None


def test_the_worker_writes_the_platforms_problem_type():
    from apps.http.problems import PROBLEM_TYPE_BASE

    assert gunicorn_workers.PROBLEM_TYPE_BASE == PROBLEM_TYPE_BASE
    assert issubclass(gunicorn_workers.QueueTimedThreadWorker, gunicorn_workers.ProblemRefusals)
    assert issubclass(gunicorn_workers.ProblemSyncWorker, gunicorn_workers.ProblemRefusals)
