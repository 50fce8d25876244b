"""Small formatting filters of the operator console's templates."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """1.5 -> '1.5 s', 125 -> '2 min 5 s', 7300 -> '2 h 1 min'; '' for None."""
    if seconds is None or seconds == "":
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def lookup(mapping, key):
    return (mapping or {}).get(key)


@register.filter
def percent(value) -> str:
    if value is None:
        return ""
    return f"{float(value) * 100:.1f} %"


@register.filter
def redacted(text) -> str:
    """Task failure text with anything that looks like a credential or a
    link carrying one replaced (apps/jobs/redaction.py)."""
    from apps.jobs.redaction import redact_text

    return redact_text(str(text or ""))


@register.filter
def ago(epoch) -> str:
    """Seconds since an epoch time, as a duration ('' for None)."""
    import time

    if epoch in (None, ""):
        return ""
    return f"{duration(max(0.0, time.time() - float(epoch)))} ago"


@register.filter
def when(iso) -> str:
    """An ISO 8601 time as 'YYYY-MM-DD HH:MM:SS.mmm' (UTC as written); '' when unreadable."""
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(str(iso)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except ValueError:
        return ""
