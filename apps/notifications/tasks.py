from __future__ import annotations

import smtplib
import socket

import pybreaker
from celery import shared_task
from django.conf import settings

from apps.jobs.base import PlatformTask
from apps.jobs.errors import PermanentError, RetryLater
from apps.jobs.services import effect_once

from .breaker import email_breaker
from .services import email_send

PROVIDER_ERRORS = (smtplib.SMTPException, OSError, socket.timeout)


@shared_task(bind=True, base=PlatformTask, name="notifications.send_email", max_retries=settings.EMAIL_MAX_RETRIES)
def send_email(self, *, to: list[str], template: str, context: dict, effect_key: str) -> str:
    """Send one templated email, once per ``effect_key``, through the breaker."""
    if not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise PermanentError(f"bad recipients {to!r}")
    with effect_once(f"email:{effect_key}", task_name=self.name) as needed:
        if not needed:
            return "already sent"
        try:
            email_breaker().call(email_send, to=to, template=template, context=context, message_id=effect_key)
        except pybreaker.CircuitBreakerError as exc:
            raise RetryLater("email provider circuit is open") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"recipients refused: {exc}") from exc
        except PROVIDER_ERRORS as exc:
            raise RetryLater(f"email provider failed: {type(exc).__name__}: {exc}") from exc
    return "sent"
