"""The audit log, read-only: filtered by actor, action, object type and days,
newest first, a page at a time.

Pages are keyed by the last row shown (occurred_at, id), not by offset: the
table is partitioned by month and only grows, so an offset would count every
row before it on each page and shift as new rows arrive.
"""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Q
from django.utils import timezone

from apps.accounts.selectors import api_keys_of_tenant, user_emails, user_id_by_email
from apps.audit.selectors import audit_entries

from .common import form_error_text, render_page
from .forms import AuditFilterForm

PAGE_SIZE = 50


def _cursor(entry) -> str:
    return f"{entry.occurred_at.isoformat()}~{entry.pk}"


def _parse_cursor(text: str):
    moment, _, pk = text.partition("~")
    try:
        occurred_at = dt.datetime.fromisoformat(moment)
        return occurred_at if occurred_at.tzinfo else None, int(pk)
    except ValueError:
        return None, None


def _shown(value) -> str:
    return "—" if value in (None, "") else json.dumps(value, ensure_ascii=False).strip('"')


def changes_text(changes: dict) -> str:
    """``{field: [before, after]}`` as "field: before → after"; other shapes
    (a support access's request details) as "field: value"."""
    return "; ".join(
        f"{field}: {_shown(value[0])} → {_shown(value[1])}" if isinstance(value, list) and len(value) == 2
        else f"{field}: {_shown(value)}"
        for field, value in (changes or {}).items())


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min), timezone.get_current_timezone())


def _entries(form):
    """The entries the form asks for, or None when it is not valid (the
    reasons are on the form)."""
    if not form.is_bound:
        return audit_entries()
    if not form.is_valid():
        return None
    data = form.cleaned_data
    actor_id = None
    if data["actor"]:
        # An address with no account matches no entry, like one that never
        # acted here: the page does not tell which addresses have accounts.
        actor_id = user_id_by_email(email=data["actor"]) or 0
    query = audit_entries(
        actor_id=actor_id, action=data["action"] or None, object_type=data["object_type"].strip() or None,
        since=_day_start(data["since"]) if data["since"] else None,
        until=_day_start(data["until"] + dt.timedelta(days=1)) if data["until"] else None,
    )
    if data["before"]:
        occurred_at, pk = _parse_cursor(data["before"])
        if occurred_at is None:
            form.add_error(None, "That page link is not valid; open the newest entries again.")
            return None
        query = query.filter(Q(occurred_at__lt=occurred_at) | Q(occurred_at=occurred_at, id__lt=pk))
    return query.order_by("-occurred_at", "-id")


def audit_page(request, *, site):
    form = AuditFilterForm(request.GET or None)
    query = _entries(form)
    rows = list(query[:PAGE_SIZE + 1]) if query is not None else []
    entries = rows[:PAGE_SIZE]
    filters = {k: v for k, v in request.GET.items() if k in form.fields and k != "before" and v}
    older = "?" + urlencode({**filters, "before": _cursor(entries[-1])}) if len(rows) > PAGE_SIZE else None
    if form.errors:
        messages.error(request, form_error_text(form))
    emails = user_emails(user_ids=[e.actor_id for e in entries])
    key_ids = {e.api_key_id for e in entries if e.api_key_id}
    prefixes = dict(api_keys_of_tenant(tenant_id=request.tenant.pk).filter(pk__in=key_ids)
                    .values_list("pk", "prefix")) if key_ids else {}
    return render_page(request, site, "audit.html", {
        "form": form, "older": older, "newest": "?" + urlencode(filters),
        "paged": bool(request.GET.get("before")),
        "rows": [{"entry": e, "actor": emails.get(e.actor_id, f"user {e.actor_id}" if e.actor_id else ""),
                  "api_key": prefixes.get(e.api_key_id, ""), "changes": changes_text(e.changes)} for e in entries],
    }, title="Audit log", status=400 if form.errors else 200)
