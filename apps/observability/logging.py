"""JSON log lines with the request id, tenant and user on every line."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from .context import request_id_var, tenant_var, user_var


class ContextFilter(logging.Filter):
    """Copy the current request/task context onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        record.tenant = tenant_var.get() or "-"
        record.user = user_var.get() or "-"
        return True


class JsonFormatter(_BaseJsonFormatter):
    def add_fields(self, log_record, record, message_dict) -> None:
        super().add_fields(log_record, record, message_dict)
        for field in ("request_id", "tenant", "user"):
            log_record.setdefault(field, getattr(record, field, "-"))
