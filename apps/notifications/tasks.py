from __future__ import annotations

import smtplib
import socket

import pybreaker
from celery import shared_task
from django.conf import settings

from apps.jobs.base import PlatformTask
from apps.jobs.errors import PermanentError, RetryLater
from apps.jobs.services import effect_once

from . import emails
from .breaker import email_breaker
from .services import email_send

PROVIDER_ERRORS = (smtplib.SMTPException, OSError, socket.timeout)


class EmailTask(PlatformTask):
    abstract = True

    def check_arguments(self, args, kwargs) -> None:
        """Refused where the message is queued (outbox row or direct send):
        an unknown template, or a context that could carry a secret."""
        if args:
            raise ValueError(f"{self.name} takes keyword arguments only")
        emails.check_message(**(kwargs or {}))


@shared_task(bind=True, base=EmailTask, name="notifications.send_email", max_retries=settings.EMAIL_MAX_RETRIES)
def send_email(self, *, to: list[str], template: str, context: dict, effect_key: str, refs: dict | None = None) -> str:
    """Send one templated email, once per ``effect_key``, through the breaker.

    ``refs`` name what the email is about (an invitation, a reset, an
    export); the registered resolver turns them into its link here, in the
    worker, so the message itself holds no secret (see emails.py)."""
    if not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise PermanentError(f"bad recipients ({len(to or [])})")
    if template not in emails.EMAILS:
        raise PermanentError(f"unknown email template {template!r}")
    with effect_once(f"email:{effect_key}", task_name=self.name) as needed:
        if not needed:
            return "already sent"
        try:
            if refs is None and emails.EMAILS[template].refs:
                # Written before messages carried references (queueing now
                # refuses this): its context holds the link already.
                resolved = {}
            else:
                resolved = emails.resolve(template, refs or {}, self.header("tenant_id"))
        except emails.EmailNotNeeded as exc:
            return f"not sent: {exc}"
        try:
            email_breaker().call(email_send, to=to, template=template, context={**context, **resolved},
                                 message_id=effect_key)
        except pybreaker.CircuitBreakerError as exc:
            raise RetryLater("email provider circuit is open") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"recipients refused: {len(exc.recipients)}") from exc
        except PROVIDER_ERRORS as exc:
            raise RetryLater(f"email provider failed: {type(exc).__name__}: {exc}") from exc
    return "sent"
