"""What people see of a task's arguments.

Tasks are given references (an invitation id, an export id), never secrets:
the worker reads or derives a token or a signed link when it needs it (see
apps/notifications/emails.py). What a message shows is redacted anyway, for
the argument a future task gets wrong and for rows written before that rule:

* on the message itself, ``argsrepr``/``kwargsrepr`` carry argument names
  only (worker logs, events, ``celery inspect``, Flower);
* where operators read stored arguments (the dead-letter and outbox pages of
  the operator admin, ``manage.py dead_letters show``), values under names
  that mean a secret, and text that looks like a credential or a link with
  one (apps/observability/redaction.py), are replaced by ``REDACTED``.
"""

from __future__ import annotations

import re

from apps.observability.redaction import REDACTED, redact_text

__all__ = ["REDACTED", "redact_text", "redacted", "redacted_repr"]

# Argument names whose values are secrets or links (whole name, or a part
# between underscores: "reset_url", "api_token", "password_again").
SECRET_NAME = re.compile(r"(^|_)(token|password|secret|url|link|signature|sig|key|cookie|authorization|"
                         r"credentials?|otp|code)($|_)", re.IGNORECASE)
# Names that end like a secret but are not one.
PLAIN_NAMES = frozenset({"effect_key", "idempotency_key", "routing_key", "cache_key", "api_key_id", "key_prefix"})


def redacted_repr(args=None, kwargs=None) -> tuple[str, str]:
    """What a message shows of its arguments: how many, and the names."""
    return f"(<{len(args or ())} args>)", "{" + ", ".join(f"'{name}': ..." for name in (kwargs or {})) + "}"


def _secret_name(name) -> bool:
    return isinstance(name, str) and name not in PLAIN_NAMES and bool(SECRET_NAME.search(name))


def redacted(value):
    """``value`` (JSON-like) with secret-named values and secret-looking text replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if _secret_name(k) and v not in (None, "") else redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
