"""Spans as JSON lines in a file: how a process that a test starts (a Celery
worker) shows the test what it traced. Loaded by config/settings/test.py
when TRACING_SPAN_FILE is set."""

from __future__ import annotations

import json
import os

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


def span_record(span) -> dict:
    """What the tests look at in a span, the same from memory or from a file."""
    context, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_id": format(parent.span_id, "016x") if parent is not None else None,
        "attributes": {key: value if isinstance(value, str | int | float | bool) else list(value)
                       for key, value in (span.attributes or {}).items()},
        "links": [format(link.context.span_id, "016x") for link in span.links],
        "service": span.resource.attributes.get("service.name"),
        "pid": os.getpid(),
    }


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: str | None = None):
        from django.conf import settings

        self.path = path or settings.TRACING_SPAN_FILE

    def export(self, spans) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span)) + "\n" for span in spans)
        # One append per batch: lines of several pool processes never interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


def read_spans(path) -> list[dict]:
    try:
        with open(path) as lines:
            return [json.loads(line) for line in lines if line.strip()]
    except FileNotFoundError:
        return []
