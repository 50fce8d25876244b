"""Templated emails (text + HTML), sent through Django's email backend."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string

from apps.jobs.errors import PermanentError

from .emails import EMAILS


def render_email(template: str, context: dict) -> tuple[str, str, str]:
    """(subject, text, html) of ``emails/<template>.*``."""
    if template not in EMAILS:
        # Queueing refuses these (emails.check_message); a message written
        # before a template was retired can still arrive.
        raise PermanentError(f"unknown email template {template!r}")
    try:
        subject = render_to_string(f"emails/{template}.subject.txt", context).strip()
        text = render_to_string(f"emails/{template}.txt", context)
        html = render_to_string(f"emails/{template}.html", context)
    except TemplateDoesNotExist as exc:
        raise PermanentError(str(exc)) from exc
    return subject, text, html


def email_send(*, to: list[str], template: str, context: dict, message_id: str) -> None:
    subject, text, html = render_email(template, context)
    message = EmailMultiAlternatives(subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=to,
                                     headers={"Message-ID": f"<{message_id}@saas-platform.dev>"})
    message.attach_alternative(html, "text/html")
    message.send(fail_silently=False)
