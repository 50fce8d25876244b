"""Serializer helpers shared by every API."""

from __future__ import annotations

import datetime as dt
import re

from django.core.validators import RegexValidator
from django.utils import timezone
from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Refuses what its OpenAPI description forbids, where DRF would take it.

    DRF ignores unknown fields, turns 5 into "5" for text, checks lengths
    after trimming surrounding whitespace, reads many date and time forms
    (20261127, 2026-W48-5) and "+5" or "1_000" as numbers. The schema
    generated from the same fields says: no unknown field, text only, at
    most maxLength characters as sent, RFC 3339 dates and times. So the raw
    values are checked against that first; DRF's own validation follows.

    Query parameters arrive as text: with ``context={"query": True}`` an
    integer is its decimal digits; in a JSON body it must be a JSON number.
    """

    def to_internal_value(self, data):
        if isinstance(data, dict):
            query = bool(self.context.get("query"))
            data = {name: _integral(self.fields.get(name), value) for name, value in data.items()}
            errors = {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))}
            for name, field in self.fields.items():
                if data.get(name) is not None:
                    problems = raw_value_errors(field, data[name], query=query)
                    if problems:
                        errors[name] = problems
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def _integral(field, value):
    """JSON Schema's integers include 6126.0; DRF reads a float through its
    text, which for 1e+16 is no integer: give it the int."""
    if isinstance(field, serializers.IntegerField) and type(value) is float and value.is_integer():
        return int(value)
    return value


# RFC 3339 (section 5.6), what OpenAPI's date-time and date formats mean, as
# Python parses it: [0-9], not \d (which matches other scripts' digits);
# upper-case T and Z only (RFC 3339 allows lower-case, Python refuses them);
# no year 0000, which Python has not; at most nine digits of a second (a
# nanosecond; Python keeps six), so that a date and time has a bounded length
# in a URL. The schema states the same pattern.
_DATE = r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
RFC3339_DATE_TIME = re.compile(rf"^{_DATE}T{_TIME}{_OFFSET}$")
RFC3339_DATE = re.compile(rf"^{_DATE}$")
# An integer as a query string writes it: decimal digits, perhaps as a JSON
# number with a zero fraction (6126.0), which DRF reads too.
QUERY_INTEGER = re.compile(r"^-?[0-9]+(?:\.0+)?$")


def raw_value_errors(field, value, *, query: bool = False):
    """What is wrong with ``value`` as sent for ``field``, before DRF converts it; None if nothing."""
    if _is_text(field):
        return _text_errors(field, value)
    if isinstance(field, serializers.ListField) and _is_text(field.child) and isinstance(value, list):
        # [0] would otherwise become ["0"], and " tag " pass a length check after trimming.
        wrong = {index: problems for index, item in enumerate(value)
                 if (problems := _text_errors(field.child, item))}
        return wrong or None
    if isinstance(field, serializers.DateTimeField | serializers.DateField):
        return _format_errors(field, value)
    if isinstance(field, serializers.IntegerField):
        return _integer_errors(value, query=query)
    return None


def _integer_errors(value, *, query: bool):
    if query and isinstance(value, str):
        integral = QUERY_INTEGER.fullmatch(value)
    else:
        integral = isinstance(value, int) and not isinstance(value, bool)
    return None if integral else ["Must be an integer (decimal digits)."]


def _text_errors(field, value):
    if not isinstance(value, str):
        return ["Must be a string."]
    limit = getattr(field, "max_length", None)
    if limit is not None and len(value) > limit:
        return [f"Ensure this field has no more than {limit} characters (as sent, surrounding spaces included)."]
    # DRF matches a pattern after trimming, and Python's $ also matches before
    # a final newline; the schema's pattern is matched against the value as sent.
    if value != value.strip() and any(isinstance(v, RegexValidator) for v in field.validators):
        return ["Must match the pattern: no surrounding whitespace."]
    return None


def _format_errors(field, value):
    if not isinstance(value, str):
        return None  # DRF refuses it with its own message
    if isinstance(field, serializers.DateTimeField):
        if not RFC3339_DATE_TIME.fullmatch(value):
            return ["Must be an RFC 3339 date and time, e.g. 2026-11-27T10:00:00Z."]
    elif not RFC3339_DATE.fullmatch(value):
        return ["Must be an RFC 3339 date, e.g. 2026-11-27."]
    return None


class InstantField(serializers.DateTimeField):
    """An RFC 3339 date and time, any offset.

    Each one the schema allows names an instant, but some lie beyond the
    calendar's ends once in UTC (0001-01-01T00:00:00+01:00 is in year 0),
    which DRF refuses with 400. As the bound of a filter such an instant
    selects what the calendar's end does, so it becomes that end.
    """

    def enforce_timezone(self, value):
        if timezone.is_aware(value):
            try:
                value.astimezone(dt.UTC)
            except OverflowError:
                end = dt.datetime.min if value.year == dt.MINYEAR else dt.datetime.max
                return end.replace(tzinfo=dt.UTC)
        return super().enforce_timezone(value)


class WindowedDateTimeField(serializers.DateTimeField):
    """A timestamp the service accepts only inside a moving window.

    ``window(now)`` returns (earliest, latest); ``rule`` says it in words. The
    service enforces it (it is a business rule of every caller, not only of
    the API); this field carries it so the OpenAPI schema can state the days
    it covers when generated.
    """

    def __init__(self, *, window, rule: str = "", **kwargs):
        self.window = window
        self.rule = rule
        super().__init__(**kwargs)


class JsonObjectField(serializers.DictField):
    """A free-form JSON object, stored as jsonb: PostgreSQL cannot store the
    NUL character (nor an unpaired surrogate) in it, so text holding one, in a
    key or a value at any depth, is refused with 400 instead of failing at
    the database."""

    default_error_messages = {"text": "Text in this object (keys included) must not contain {what}."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        what = _unstorable_text(value)
        if what:
            self.fail("text", what=what)
        return value


def _unstorable_text(value) -> str | None:
    texts = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict):
            texts.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    for text in texts:
        if "\x00" in text:
            return "the NUL character"
        if any("\ud800" <= char <= "\udfff" for char in text):
            return "an unpaired surrogate"
    return None


def _is_text(field) -> bool:
    return isinstance(field, serializers.CharField | serializers.ChoiceField)


def validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
