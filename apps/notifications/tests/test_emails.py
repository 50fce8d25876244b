"""Emails: the registry of templates, refusal at enqueue, the circuit
breaker, links resolved by the worker, the invitation path through the outbox."""

from __future__ import annotations

import time
from pathlib import Path

import pybreaker
import pytest

from apps.notifications.breaker import breaker
from apps.notifications.emails import EMAILS
from apps.notifications.tasks import send_email

pytestmark = pytest.mark.django_db

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "emails"
QUOTA_CONTEXT = {"tenant_name": "Acme", "quota": "documents", "used": 80, "limit": 100, "plan": "Free",
                 "percent": 80, "upgrade_plan": "Pro"}


def test_the_registry_and_the_template_files_name_the_same_emails():
    on_disk = {path.name.removesuffix(".subject.txt") for path in TEMPLATES_DIR.glob("*.subject.txt")}
    assert on_disk == set(EMAILS)
    for name in EMAILS:
        assert (TEMPLATES_DIR / f"{name}.txt").exists() and (TEMPLATES_DIR / f"{name}.html").exists()


def test_plain_text_parts_are_not_html_escaped():
    """An ``&`` in a link or a tenant's name stays as it is in the text part
    and the subject; the HTML part escapes it."""
    from apps.notifications.services import render_email

    for path in TEMPLATES_DIR.glob("*.txt"):
        assert path.read_text().startswith("{% autoescape off %}"), path.name
    subject, text, html = render_email("password_reset", {"tenant_name": "Smith & Co",
                                                          "url": "https://h/confirm?reset=1&token=t"})
    assert subject == "Reset your password at Smith & Co"
    assert "https://h/confirm?reset=1&token=t" in text and "reset=1&amp;token=t" in html


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"template": "password_rest"}, "unknown email template 'password_rest'"),
    ({"context": {"tenant_name": "Acme", "url": "https://x/?token=abc"}}, "takes no context value(s) url"),
    ({"context": {"tenant_name": "Acme", "token": "abc"}}, "takes no context value(s) token"),
    ({"refs": {}}, "refers to password_reset_id, not nothing"),
    ({"to": ["nobody"]}, "bad recipients"),
    ({"effect_key": "reset:https://x/?token=abc"}, "may not hold a link"),
])
def test_a_message_the_registry_refuses_fails_at_enqueue_and_writes_no_row(alpha, kwargs, error):
    from apps.jobs.models import OutboxMessage
    from apps.jobs.services import control_outbox_enqueue

    message = {"to": ["a@example.com"], "template": "password_reset", "context": {"tenant_name": "Acme"},
               "refs": {"password_reset_id": 1}, "effect_key": "refused", **kwargs}
    before = OutboxMessage.objects.count()
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        control_outbox_enqueue(send_email, kwargs=message)
    with pytest.raises(ValueError):
        send_email.apply_async(kwargs=message)  # the direct path refuses it as well
    assert OutboxMessage.objects.count() == before


def test_the_breaker_opens_half_opens_and_closes(clean_breaker):
    circuit = breaker("test-circuit", fail_max=2, reset_seconds=1)

    def fail():
        raise OSError("provider down")

    for _ in range(2):
        with pytest.raises((OSError, pybreaker.CircuitBreakerError)):
            circuit.call(fail)
    assert circuit.current_state == "open"
    with pytest.raises(pybreaker.CircuitBreakerError):
        circuit.call(lambda: "not even tried")
    time.sleep(1.1)
    assert circuit.call(lambda: "probe") == "probe"  # half-open: one trial call, it works
    assert circuit.current_state == "closed"


def test_an_open_circuit_makes_the_email_task_retry_later(smtp_sink, settings):
    from apps.jobs.errors import RetryLater
    from apps.jobs.models import DeadLetter
    from apps.notifications.breaker import email_breaker

    assert RetryLater in send_email.autoretry_for  # with backoff and jitter, see PlatformTask
    email_breaker().open()
    # Run eagerly, the retries follow at once; a worker spaces them out.
    result = send_email.apply(kwargs={"to": ["a@example.com"], "template": "quota_warning", "context": QUOTA_CONTEXT,
                                      "effect_key": "open-circuit"})
    assert result.failed() and smtp_sink.messages == []  # the provider was never called
    letter = DeadLetter.objects.get(kwargs__effect_key="open-circuit")
    assert letter.attempts == settings.EMAIL_MAX_RETRIES + 1 and "circuit is open" in letter.exception


def test_email_has_text_and_html_and_goes_once_per_key(smtp_sink):
    kwargs = {"to": ["a@example.com"], "template": "quota_warning", "effect_key": "once-1", "context": QUOTA_CONTEXT}
    assert send_email.apply(kwargs=kwargs).get() == "sent"
    assert send_email.apply(kwargs=kwargs).get() == "already sent"
    assert len(smtp_sink.messages) == 1
    data = smtp_sink.messages[0]["data"]
    assert "Acme has used 80% of its documents quota" in data and "text/plain" in data and "text/html" in data


def test_bad_recipients_are_a_dead_letter_not_a_retry(smtp_sink):
    from apps.jobs.models import DeadLetter

    result = send_email.apply(kwargs={"to": ["nobody"], "template": "invitation", "context": {}, "effect_key": "bad"})
    assert result.failed()
    assert DeadLetter.objects.get(kwargs__effect_key="bad").attempts == 1


def test_an_invitation_is_emailed_through_the_control_outbox_with_no_token_in_the_row(
        api, alpha, smtp_sink, outbox_inline, django_capture_on_commit_callbacks):
    from apps.jobs.models import OutboxMessage

    with django_capture_on_commit_callbacks(execute=True, using="default"):
        created = api(alpha, role="admin").post("invitations", {"email": "newbie@example.com", "role": "member"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert smtp_sink.messages[0]["to"] == ["newbie@example.com"]
    assert token in smtp_sink.messages[0]["data"]  # derived by the task from the invitation's id
    row = OutboxMessage.objects.get(kwargs__to=["newbie@example.com"])
    assert row.kwargs["refs"] == {"invitation_id": created.json()["id"]}
    assert token not in str(row.kwargs) and "accept?" not in str(row.kwargs)


def test_an_invitation_withdrawn_before_its_email_goes_is_not_sent(alpha, smtp_sink):
    from apps.accounts.services import invitation_create, invitation_revoke
    from apps.jobs.models import OutboxMessage

    created = invitation_create(tenant_id=alpha.pk, email="gone@example.com", role="member", invited_by=None)
    invitation_revoke(tenant_id=alpha.pk, invitation_id=created.invitation.pk)
    row = OutboxMessage.objects.get(kwargs__to=["gone@example.com"])
    result = send_email.apply(kwargs=row.kwargs, headers=row.headers)
    assert result.get() == "not sent: the invitation was withdrawn or replaced" and smtp_sink.messages == []


def test_a_message_queued_before_references_still_sends_its_own_link(smtp_sink):
    """A dead letter written before messages carried references (its link in
    the context) is still sent when replayed."""
    result = send_email.apply(kwargs={
        "to": ["old@example.com"], "template": "invitation", "effect_key": "legacy-invitation",
        "context": {"tenant_name": "Alpha", "role": "member", "token": "t0ken", "expires_at": "soon",
                    "url": "https://alpha.localhost/invitations/accept?token=t0ken", "api_url": "https://x/"}})
    assert result.get() == "sent" and "accept?token=t0ken" in smtp_sink.messages[0]["data"]


def test_crossing_80_percent_of_a_quota_warns_the_owners(api, alpha, smtp_sink, outbox_inline,
                                                         django_capture_on_commit_callbacks):
    from apps.billing.models import Plan

    Plan.objects.filter(code="free").update(max_documents=5)
    client = api(alpha, role="member")
    with django_capture_on_commit_callbacks(execute=True, using="shard_main"):
        client.post("documents/bulk", {"documents": [{"title": "x"}] * 3})
    assert smtp_sink.messages == []
    with django_capture_on_commit_callbacks(execute=True, using="shard_main"):
        client.post("documents", {"title": "fourth"})
    assert len(smtp_sink.messages) == 1 and "owner@alpha.test" in smtp_sink.messages[0]["to"]
    assert "/admin/usage/" in smtp_sink.messages[0]["data"]  # the link the worker added
