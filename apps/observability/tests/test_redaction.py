"""A followed link's token stays out of log lines and trace attributes."""

from __future__ import annotations

import json
import logging

from django.test import RequestFactory

from apps.observability.logging import JsonFormatter
from apps.observability.redaction import REDACTED, redact_text
from apps.observability.tracing import _redact_url_attributes

TOKEN = "dj8do2-d57ab01f678ac5199e19deae7173b6d8"


def test_secret_looking_text_is_redacted_and_the_rest_kept():
    text = redact_text(f"/password/reset/confirm?reset=7&token={TOKEN} and sk_0123456789ab_secretpart")
    assert TOKEN not in text and "secretpart" not in text
    assert text.startswith("/password/reset/confirm?reset=7&token=" + REDACTED)


def test_djangos_request_extra_is_written_without_its_query_values():
    request = RequestFactory().get(f"/password/reset/confirm?reset=7&token={TOKEN}")
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Gone: %s", (request.path,), None)
    record.status_code, record.request = 410, request
    line = json.loads(JsonFormatter("%(message)s").format(record))
    assert line["message"] == "Gone: /password/reset/confirm" and TOKEN not in json.dumps(line)
    assert "reset=7" in line["request"]


def test_a_spans_url_attributes_lose_the_token():
    class Span:
        attributes = {"http.target": f"/api/v1/exports/1/download?token={TOKEN}", "http.method": "GET"}

        def set_attribute(self, name, value):
            self.attributes = {**self.attributes, name: value}

    span = Span()
    _redact_url_attributes(span)
    assert span.attributes["http.target"] == f"/api/v1/exports/1/download?token={REDACTED}"
    assert span.attributes["http.method"] == "GET"
