"""What a secret looks like in text: one home for the patterns that log
lines, trace attributes and the operators' pages redact (apps/jobs/redaction.py
adds the rules for task arguments).

Tokens travel in links people follow (an invitation, a password reset, a
signed download); the request that follows one must not copy the token into
a log line or a trace, where far more people read it than the email.
"""

from __future__ import annotations

import re

REDACTED = "<redacted>"

SECRET_TEXT = [
    re.compile(r"(?i)(token|sig|signature|key|password)=[^&\s\"'<>]+"),  # a query or form value
    re.compile(r"\bsk_[0-9a-f]{12}_[A-Za-z0-9_-]+"),  # an API key
    re.compile(r"\but_[A-Za-z0-9_:.-]{16,}"),  # a user token
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"),
]


def redact_text(text: str) -> str:
    """``text`` with every credential-looking part replaced by REDACTED."""
    for pattern in SECRET_TEXT:
        text = pattern.sub(lambda m: (m.group(1) + "=" + REDACTED) if m.groups() else REDACTED, text)
    return text
