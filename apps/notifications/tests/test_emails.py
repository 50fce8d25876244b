"""Emails: templates, the circuit breaker, the invitation path through the outbox."""

from __future__ import annotations

import time

import pybreaker
import pytest

from apps.notifications.breaker import breaker
from apps.notifications.tasks import send_email

pytestmark = pytest.mark.django_db


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
    result = send_email.apply(kwargs={"to": ["a@example.com"], "template": "report_ready", "context": {},
                                      "effect_key": "open-circuit"})
    assert result.failed() and smtp_sink.messages == []  # the provider was never called
    letter = DeadLetter.objects.get(kwargs__effect_key="open-circuit")
    assert letter.attempts == settings.EMAIL_MAX_RETRIES + 1 and "circuit is open" in letter.exception


def test_email_has_text_and_html_and_goes_once_per_key(smtp_sink):
    kwargs = {"to": ["a@example.com"], "template": "quota_warning", "effect_key": "once-1",
              "context": {"tenant_name": "Acme", "quota": "documents", "used": 80, "limit": 100, "plan": "Free",
                          "percent": 80, "upgrade_plan": "Pro"}}
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


def test_an_invitation_is_emailed_through_the_control_outbox(api, alpha, smtp_sink, outbox_inline,
                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True, using="default"):
        created = api(alpha, role="admin").post("invitations", {"email": "newbie@example.com", "role": "member"})
    assert created.status_code == 201
    assert smtp_sink.messages[0]["to"] == ["newbie@example.com"]
    assert created.json()["token"] in smtp_sink.messages[0]["data"]


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
