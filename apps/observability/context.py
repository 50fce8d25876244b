"""Per-request (or per-task) context that every log line carries.

contextvars rather than thread-locals: they are correct under threads, under
asyncio, and they are reset explicitly at the end of each unit of work.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from dataclasses import dataclass

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
tenant_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)
user_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("user", default=None)
# (trace id, span id) of the request or task this context last ran, when
# traced: for log lines written after its span ended (apps/observability/tracing.py).
trace_ids_var: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("trace_ids", default=None)


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user (session or user token), an API key, or the system."""

    type: str  # "user" | "api_key" | "system" | "support" | "operator"
    user_id: int | None = None
    api_key_id: int | None = None


SYSTEM = Actor(type="system")
actor_var: contextvars.ContextVar[Actor] = contextvars.ContextVar("actor", default=SYSTEM)

# Accept a caller's id only if it is short and harmless in a log line / header.
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(candidate: str | None) -> str:
    if candidate and _REQUEST_ID_PATTERN.match(candidate):
        return candidate
    return new_request_id()
