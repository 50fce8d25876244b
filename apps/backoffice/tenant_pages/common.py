"""What every tenant admin page shares: the admin chrome, the caller's role,
and turning a service's refusal into a message on the page."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from apps.http.errors import DomainError

# What a service may refuse with; each becomes a message, never a 500.
REFUSALS = (ValidationError, PermissionDenied, DomainError)

PAGES = [
    ("tenant-members", "Members"),
    ("tenant-api-keys", "API keys"),
    ("tenant-audit", "Audit log"),
    ("tenant-exports", "Exports"),
    ("tenant-failed-jobs", "Failed jobs"),
    ("tenant-usage", "Usage"),
    ("tenant-webhooks", "Webhooks"),
    ("tenant-lifecycle", "Data and deletion"),
]


def acting_role(request) -> str | None:
    """The caller's role in the host's tenant, decided exactly as for the API
    (an operator under a support grant acts as an admin)."""
    from apps.api.authentication import user_principal

    return user_principal(request.user, request.tenant).role


def refusal_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    if isinstance(exc, DomainError):
        return exc.detail
    return str(exc) or "You may not do this."


def form_error_text(form) -> str:
    """A form's errors as one sentence for a message."""
    parts = []
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else None
        parts.append(f"{label or field.replace('_', ' ').capitalize()}: {' '.join(errors)}" if field != "__all__"
                     else " ".join(errors))
    return " ".join(parts)


def page_url(site, name: str, *args) -> str:
    return reverse(f"{site.name}:{name}", args=args)


def back_to(site, name: str, *, error: str | None = None, request=None):
    """Redirect to one of the pages (after a POST), with an error message if given."""
    if error:
        messages.error(request, error)
    return redirect(page_url(site, name))


def render_page(request, site, template: str, context: dict, *, title: str, status: int = 200):
    request.current_app = site.name
    return TemplateResponse(request, f"tenant_admin/{template}", {
        **site.each_context(request), "title": title, "tenant": request.tenant, "pages": PAGES, **context,
    }, status=status)


def perform(request, site, page_name: str, action, success):
    """Run ``action`` (a service call, and the audit row the API writes with
    it); a refusal becomes an error message, success the message
    ``success(result)``; either way back to the page (post/redirect/get)."""
    try:
        result = action()
    except REFUSALS as exc:
        return back_to(site, page_name, request=request, error=refusal_text(exc))
    messages.success(request, success(result))
    return back_to(site, page_name)
