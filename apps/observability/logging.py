"""JSON log lines with the request id, tenant and user on every line, and
the trace and span ids when tracing is on ("-" otherwise)."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from . import tracing
from .context import request_id_var, tenant_var, user_var
from .redaction import redact_text

CONTEXT_FIELDS = ("request_id", "tenant", "user", "trace_id", "span_id")


class ContextFilter(logging.Filter):
    """Copy the current request/task context onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        record.tenant = tenant_var.get() or "-"
        record.user = user_var.get() or "-"
        record.trace_id, record.span_id = tracing.current_ids() if tracing.ENABLED else tracing.NO_IDS
        return True


class JsonFormatter(_BaseJsonFormatter):
    def add_fields(self, log_record, record, message_dict) -> None:
        super().add_fields(log_record, record, message_dict)
        for field in CONTEXT_FIELDS:
            log_record.setdefault(field, getattr(record, field, "-"))
        # Django logs a 4xx/5xx with the request as an extra, whose repr is
        # the full path: a followed invitation, reset or download link would
        # put its token on the line. Written without those values.
        for field in ("request", "message"):
            if field in log_record and log_record[field] is not None:
                log_record[field] = redact_text(str(log_record[field]))


# What Celery's worker puts on its log lines about a task's payload: the
# "received", "succeeded" and failure lines carry the arguments and the
# return value, both as the message's %-arguments and as a ``data`` extra
# that the JSON formatter writes out in full.
TASK_PAYLOAD_FIELDS = ("args", "kwargs", "return_value")
CELERY_PAYLOAD_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.worker.request")


class TaskPayloadRedactor(logging.Filter):
    """Blank a task's arguments and return value on Celery's log lines.

    Tasks receive secrets (an invitation token, a signed download link) to
    put into emails; a log line is readable by far more people than the
    email. Attached to the Celery loggers that log payloads (see
    ``install_task_payload_redaction``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):
            record.args = _redacted(record.args)
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            record.data = _redacted(data)
        return True


def _redacted(values: dict) -> dict:
    return {key: "<redacted>" if key in TASK_PAYLOAD_FIELDS else value for key, value in values.items()}


def install_task_payload_redaction() -> None:
    redactor = TaskPayloadRedactor()
    for name in CELERY_PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TaskPayloadRedactor) for f in logger.filters):
            logger.addFilter(redactor)
