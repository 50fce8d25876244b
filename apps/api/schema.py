"""OpenAPI descriptions of what the platform's own classes accept and answer."""

from __future__ import annotations

import datetime as dt

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)

from .serializers import RFC3339_DATE, RFC3339_DATE_TIME


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "apps.api.authentication.BearerAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (sk_...) or a user token (ut_..., from POST /api/v1/auth/token).",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "apps.api.authentication.TenantSessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


# --- problem responses -------------------------------------------------------
# Every operation can meet the platform's cross-cutting answers (unknown host,
# suspended tenant, authentication, rate limits, shedding, maintenance), and
# bodies and preconditions add their own. They are documented here, once, from
# what the middleware, DRF and the services actually return, so each operation
# lists every status a client has to handle, each with the problem body.

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An RFC 9457 problem details object.",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": True,
                   "description": "Field errors of a validation problem, by field name."},
        "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$",
                     "description": "The OpenTelemetry trace id of the request, when the platform traces it."},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}

EVERY_OPERATION = {
    "400": "Invalid query parameters, headers, body or host name, or a request that is not valid HTTP.",
    "401": "Missing, unknown, expired or revoked credentials.",
    "403": "The caller's role or key scope does not allow this, the plan's quota is reached, or the tenant is suspended.",
    "404": "No tenant is served at this host, or the object does not exist in this tenant.",
    "406": "The Accept header asks for a format the API does not produce.",
    "429": "A rate limit was reached; Retry-After says when to try again.",
    "503": "Overloaded, the tenant's data store is unavailable, or writes are paused for maintenance; see Retry-After.",
}
WITH_BODY = {
    "409": "The Idempotency-Key is in use by a request still in progress, or the change conflicts with the current state.",
    "413": "The body is larger than the server accepts.",
    "415": "The body is not JSON.",
}
CONDITIONAL = {
    "412": "If-Match does not name the current version (the ETag); read the object again.",
    "428": "This change needs an If-Match header with the version read before.",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}
# Refused by the HTTP server before the application sees the request
# (config/gunicorn_workers.py), whatever the operation: one component each,
# referenced from every operation.
SERVER_RESPONSES = {
    "414": ("UriTooLong", "The request line (method, path and query) is longer than the server reads "
                          "(GUNICORN_LIMIT_REQUEST_LINE bytes); send fewer or shorter query parameters."),
    "431": ("RequestHeaderFieldsTooLarge", "A header is longer than the server reads "
                                           "(GUNICORN_LIMIT_REQUEST_FIELD_SIZE bytes), or there are more headers "
                                           "than it reads (GUNICORN_LIMIT_REQUEST_FIELDS)."),
}


def _problem(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _dedupe_types(node) -> None:
    """drf-spectacular writes "null" twice into a 3.1 type list for some
    nullable fields (["string", "null", "null"]), which is not a valid schema."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), list):
            node["type"] = list(dict.fromkeys(node["type"]))
        for value in node.values():
            _dedupe_types(value)
    elif isinstance(node, list):
        for value in node:
            _dedupe_types(value)


def _refuses_no_body(body: dict, schemas: dict) -> bool:
    """No body reads as {}: refused when the body has required fields or must be one of several shapes."""
    for media in body.get("content", {}).values():
        schema = media.get("schema", {})
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            schema = schemas.get(ref.rsplit("/", 1)[1], {})
        if schema.get("required") or schema.get("oneOf"):
            return True
    return False


def document_problem_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: add the problem responses (and
    the shared JsonValue component), and mark bodies required where the
    server refuses a request without one."""
    _dedupe_types(result)
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["JsonValue"] = JSON_VALUE_SCHEMA
    shared = components.setdefault("responses", {})
    for name, description in SERVER_RESPONSES.values():
        shared[name] = _problem(description)
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method in {"get", "head", *WRITE_METHODS}:
                _document_operation(method, operation, schemas)
    return result


def _document_operation(method: str, operation: dict, schemas: dict) -> None:
    statuses = dict(EVERY_OPERATION)
    if method in WRITE_METHODS:
        statuses.update(WITH_BODY)
    headers = {p.get("name", "").lower() for p in operation.get("parameters", []) if p.get("in") == "header"}
    if "if-match" in headers:
        statuses.update(CONDITIONAL)
    body = operation.get("requestBody")
    if body and _refuses_no_body(body, schemas):
        body["required"] = True
    responses = operation.setdefault("responses", {})
    for status, description in statuses.items():
        responses.setdefault(status, _problem(description))
    for status, (name, _) in SERVER_RESPONSES.items():
        responses.setdefault(status, {"$ref": f"#/components/responses/{name}"})


# --- request bodies as the server validates them ------------------------------
# The schema promises what the server accepts: a request valid by the schema
# is accepted (unless the state forbids it), and one the schema calls invalid
# is refused. drf-spectacular describes DRF's defaults; these extensions add
# what apps.api.serializers changes or what DRF checks without saying so.


class StrictSerializerScheme(OpenApiSerializerExtension):
    """StrictSerializer refuses unknown fields; non-empty lists say so."""

    target_class = "apps.api.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        if vars(type(self.target)).get("__doc__") is None:
            schema.pop("description", None)  # inherited from the base class; says nothing about this body
        for name, field in self.target.fields.items():
            prop = schema.get("properties", {}).get(name)
            if prop is None or prop.get("type") != "array":
                continue
            # DRF checks these on lists of serializers (many=True) and on
            # allow_empty=False list fields; drf-spectacular leaves them out.
            if getattr(field, "allow_empty", True) is False:
                prop["minItems"] = max(prop.get("minItems", 0), 1)
            if getattr(field, "max_length", None) is not None:
                prop.setdefault("maxItems", field.max_length)
            if getattr(field, "min_length", None) is not None:
                prop["minItems"] = max(prop.get("minItems", 0), field.min_length)
        return schema


# DRF refuses NUL characters in any text, and trims surrounding whitespace
# (Python's str.strip) before checking that a required text is not blank.
# Python's whitespace is not ECMA's \s (it adds U+001C-U+001F and U+0085 and
# leaves out U+FEFF), so the class is spelled out. Where blank is allowed,
# drf-spectacular adds "" as a oneOf branch of its own, so the pattern must
# not match "" too.
_SPACE = "".join(f"\\u{code:04x}" for code in range(0x3001) if chr(code).isspace())
TEXT_WITHOUT_NUL = r"^[^\u0000]+$"
TEXT_NOT_BLANK = rf"^[^\u0000]*[^\u0000{_SPACE}][^\u0000]*$"


class TextFieldScheme(OpenApiSerializerFieldExtension):
    target_class = "rest_framework.fields.CharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        field = self.target
        constrained = "pattern" in schema or "format" in schema or "enum" in schema or any(
            isinstance(v, RegexValidator) for v in field.validators)
        if direction == "request" and schema.get("type") == "string" and not constrained:
            schema["pattern"] = text_pattern(field)
        return schema


def text_pattern(field) -> str:
    """What DRF accepts as this text: no NUL; when it trims, a length it
    checks after trimming is a distance between the first and the last
    character that is not whitespace."""
    shortest = getattr(field, "min_length", None) or 0
    if field.trim_whitespace and shortest > 1:
        return rf"^[^\u0000]*[^\u0000{_SPACE}][^\u0000]{{{shortest - 2},}}[^\u0000{_SPACE}][^\u0000]*$"
    blank_refused = field.trim_whitespace and not field.allow_blank
    return TEXT_NOT_BLANK if blank_refused else TEXT_WITHOUT_NUL


# StrictSerializer takes dates and times in RFC 3339 form only, with upper-case
# T and Z (Python's parser refuses the lower-case ones RFC 3339 allows): the
# pattern says what the format alone does not.
class DateTimeFieldScheme(OpenApiSerializerFieldExtension):
    target_class = "rest_framework.fields.DateTimeField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["pattern"] = RFC3339_DATE_TIME.pattern
        return schema


class DateFieldScheme(OpenApiSerializerFieldExtension):
    target_class = "rest_framework.fields.DateField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["pattern"] = RFC3339_DATE.pattern
        return schema


# Any JSON value without NUL in its text, keys included (what jsonb stores).
JSON_VALUE_SCHEMA = {
    "description": "Any JSON value; no text in it, object keys included, may contain the NUL character.",
    "anyOf": [
        {"type": "string", "pattern": r"^[^\u0000]*$"},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "object", "propertyNames": {"pattern": r"^[^\u0000]*$"},
         "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
    ],
}


class JsonObjectFieldScheme(OpenApiSerializerFieldExtension):
    target_class = "apps.api.serializers.JsonObjectField"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "object", "propertyNames": {"pattern": r"^[^\u0000]*$"},
                "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}


def utc_days_pattern(first: dt.date, last: dt.date) -> str:
    """A pattern for RFC 3339 UTC timestamps on the days first..last.

    [0-9], not \\d: Python's \\d also matches other scripts' digits."""
    months: dict[str, list[str]] = {}
    day = first
    while day <= last:
        months.setdefault(f"{day:%Y-%m}", []).append(f"{day:%d}")
        day += dt.timedelta(days=1)
    dates = "|".join(f"{month}-(?:{'|'.join(days)})" for month, days in months.items())
    return rf"^(?:{dates})T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{{1,6}})?Z$"


class WindowedDateTimeScheme(OpenApiSerializerFieldExtension):
    """A moving window cannot be a static constraint; the schema is generated
    per request, so it states the window as of then. The pattern admits UTC
    timestamps on the whole days inside the window, so whatever the hour they
    are accepted; the description gives the whole rule (any offset is
    accepted, anywhere inside the window)."""

    target_class = "apps.api.serializers.WindowedDateTimeField"
    match_subclasses = True
    priority = 1  # over DateTimeFieldScheme, which matches it too

    def map_serializer_field(self, auto_schema, direction):
        now = timezone.now()
        earliest, latest = (moment.astimezone(dt.UTC) for moment in self.target.window(now))
        first = earliest.date() if earliest.time() == dt.time(0) else earliest.date() + dt.timedelta(days=1)
        last = latest.date() - dt.timedelta(days=1)
        rule = f"{self.target.rule} " if self.target.rule else ""
        return {
            "type": "string",
            "pattern": utc_days_pattern(first, last),
            "description": (f"{rule}As of {now:%Y-%m-%dT%H:%M}Z: from {earliest:%Y-%m-%dT%H:%M:%S}Z to "
                            f"{latest:%Y-%m-%dT%H:%M:%S}Z; other times are refused with 400. Any UTC offset is "
                            f"accepted; the pattern lists the UTC form for the whole days of the window."),
            "example": f"{last:%Y-%m-%d}T12:00:00Z",
        }
