"""The one registry of the emails the platform sends.

Each email names its template (``emails/<name>.subject.txt``, ``.txt`` and
``.html``), the context values its sender gives when it queues it
(``params``) and the ids it refers to (``refs``).

Neither may hold a secret. Task arguments are stored in the outbox (kept for
days), copied into dead letters, published to the broker and shown to
operators, so an invitation token, a password reset link or a signed
download link never travels in them. The app that owns the secret registers
a *link resolver* for its email (in its AppConfig.ready(); this app sits
below accounts and reports and imports neither): the worker calls it with
the refs just before sending and it reads or derives what the email needs
(``url``, ``token``) at that moment. A replayed dead letter therefore
resolves afresh, and nothing an operator can read opens anything.

Queueing checks the message against this registry (``check_message``): an
unknown template, a context value that is not a declared param, or a missing
ref is refused with ValueError where the outbox row is written, not later
in a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


class EmailNotNeeded(Exception):
    """Raised by a resolver when the email has no point any more (the
    invitation was accepted or withdrawn, the reset link was used): the task
    sends nothing and is done."""


@dataclass(frozen=True)
class Email:
    name: str
    params: frozenset[str]
    refs: frozenset[str] = frozenset()
    # What the resolver adds; a sender may never put these in ``context``.
    resolved: frozenset[str] = field(default_factory=lambda: frozenset({"url"}))


def _email(name: str, params: set[str], refs: set[str] = frozenset(), resolved: set[str] = frozenset({"url"})):
    return Email(name=name, params=frozenset(params), refs=frozenset(refs), resolved=frozenset(resolved))


EMAILS: dict[str, Email] = {e.name: e for e in [
    _email("invitation", {"tenant_name", "role", "inviter", "expires_at"}, {"invitation_id"},
           resolved={"url", "token", "api_url"}),
    _email("password_reset", {"tenant_name"}, {"password_reset_id"}),
    _email("report_ready", {"tenant_name", "kind", "format", "rows", "valid_hours"}, {"export_id"}),
    _email("export_failed", {"tenant_name", "kind", "format"}, {"export_id"}),
    _email("quota_warning", {"tenant_name", "quota", "used", "limit", "plan", "percent", "upgrade_plan"}),
    # Its link resolver is registered by apps/webhooks (the tenant admin's webhooks page).
    _email("webhook_endpoint_disabled", {"tenant_name", "endpoint_id", "endpoint_host", "failing_days"}),
]}

# (refs, tenant id or None) -> the resolved context values. tenant id comes
# from the message's headers (every tenant's message carries it).
Resolver = Callable[[dict, "int | None"], dict]
_resolvers: dict[str, Resolver] = {}


def register_resolver(template: str, resolver: Resolver) -> None:
    """Have ``resolver`` supply the secret or derived values of ``template``."""
    if template not in EMAILS:
        raise ValueError(f"unknown email template {template!r}")
    _resolvers[template] = resolver


def email_of(template: str) -> Email:
    email = EMAILS.get(template)
    if email is None:
        raise ValueError(f"unknown email template {template!r}; known: {', '.join(sorted(EMAILS))}")
    return email


def check_message(*, to=None, template=None, context=None, refs=None, effect_key=None, **unknown) -> None:
    """Refuse (ValueError) a message that the worker could not send or that
    would carry more than the registry allows."""
    if unknown:
        raise ValueError(f"unexpected email arguments: {', '.join(sorted(unknown))}")
    email = email_of(template)
    if not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise ValueError(f"bad recipients for the {template} email")
    if not effect_key:
        raise ValueError("an email needs an effect_key (it is sent once per key)")
    extra = set(context or {}) - email.params
    if extra:
        # "url" or "token" here would put a secret into the outbox: the
        # resolver adds them in the worker instead.
        raise ValueError(f"the {template} email takes no context value(s) {', '.join(sorted(extra))}; "
                         f"it takes {', '.join(sorted(email.params))}")
    given = set(refs or {})
    if given != email.refs:
        raise ValueError(f"the {template} email refers to {', '.join(sorted(email.refs)) or 'nothing'}, "
                         f"not {', '.join(sorted(given)) or 'nothing'}")
    if any(mark in str(effect_key) for mark in ("token=", "http://", "https://")):
        raise ValueError("an effect_key is shown to operators and may not hold a link")


def _usage_link(refs: dict, tenant_id: int | None) -> dict:
    """The tenant admin's usage page (no secret: it asks for a sign-in)."""
    from apps.tenancy.links import tenant_url
    from apps.tenancy.models import Tenant

    tenant = Tenant.objects.filter(pk=tenant_id).first() if tenant_id else None
    return {"url": tenant_url(tenant, "/admin/usage/")} if tenant is not None else {}


_resolvers["quota_warning"] = _usage_link


def resolve(template: str, refs: dict, tenant_id: int | None) -> dict:
    """The values the worker adds to the context (links, tokens), read or
    derived now. Raises EmailNotNeeded, or PermanentError for a message
    whose refs cannot be resolved."""
    resolver = _resolvers.get(template)
    if resolver is None:
        if EMAILS[template].refs:
            from apps.jobs.errors import PermanentError

            raise PermanentError(f"no resolver registered for the {template} email")
        return {}
    values = resolver(dict(refs or {}), tenant_id)
    unexpected = set(values) - EMAILS[template].resolved
    if unexpected:
        raise ValueError(f"the {template} resolver returned undeclared values {sorted(unexpected)}")
    return values
