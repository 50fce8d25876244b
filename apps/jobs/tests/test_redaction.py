"""What operators see of task arguments: names only on the message, and
redacted values on the pages and in the command that show stored ones."""

from __future__ import annotations

import celery
import pytest
from django.test import Client
from django.utils import timezone

from apps.jobs.models import DeadLetter, OutboxMessage
from apps.jobs.redaction import REDACTED, redact_text, redacted
from tests.support import command_output

pytestmark = pytest.mark.django_db

LINK = "https://alpha.localhost/password/reset/confirm?reset=7&token=dj8d-0123456789abcdef"
PLANTED = {"to": ["a@example.com"], "template": "password_reset", "effect_key": "legacy-1",
           "context": {"tenant_name": "Alpha", "url": LINK, "token": "s3cret-invitation-token"},
           "api_key": "sk_0123456789ab_abcdefghijklmnopqrstuvwxyz"}


def test_secret_names_and_secret_looking_text_are_redacted_and_nothing_else():
    shown = redacted(PLANTED)
    assert shown["context"] == {"tenant_name": "Alpha", "url": REDACTED, "token": REDACTED}
    assert shown["api_key"] == REDACTED and shown["effect_key"] == "legacy-1" and shown["to"] == ["a@example.com"]
    assert redacted({"refs": {"invitation_id": 4}, "api_key_id": 3}) == {"refs": {"invitation_id": 4}, "api_key_id": 3}
    text = redact_text(f"failed sending {LINK} with Bearer ut_abcdefghijklmnopqrstu and sk_0123456789ab_xyz")
    assert "dj8d-0123456789abcdef" not in text and "ut_abcdefghijklmnopqrstu" not in text and "sk_0123" not in text
    assert "token=" + REDACTED in text


@pytest.fixture
def planted_rows(tenants, db):
    """A dead letter and an outbox row written with a secret in their
    arguments (as rows from before arguments became references were)."""
    now = timezone.now()
    letter = DeadLetter.objects.create(
        task_name="notifications.send_email", task_id="t-1", args=[LINK], kwargs=PLANTED, headers={},
        exception=f"RetryLater: could not send {LINK}", traceback=f"Traceback ...\n  url={LINK}\n",
        first_failed_at=now, last_failed_at=now)
    message = OutboxMessage.objects.create(task_name="notifications.send_email", kwargs=PLANTED,
                                           last_error=f"OSError at {LINK}")
    return letter, message


SECRETS = ("dj8d-0123456789abcdef", "s3cret-invitation-token", "abcdefghijklmnopqrstuvwxyz")


def test_the_operator_admin_shows_stored_arguments_redacted(planted_rows, django_user_model):
    letter, message = planted_rows
    operator = django_user_model.objects.create_superuser(email="ops@platform.test", password="ops-pass")
    client = Client(HTTP_HOST="localhost")
    client.force_login(operator)
    for path in ("/admin/jobs/deadletter/", f"/admin/jobs/deadletter/{letter.pk}/change/",
                 "/admin/jobs/outboxmessage/", f"/admin/jobs/outboxmessage/{message.pk}/change/",
                 "/admin/console/dead-letters/?status=all",
                 f"/admin/console/dead-letters/confirm/?operation=replay&ids={letter.pk}"):
        response = client.get(path)
        assert response.status_code == 200, path
        page = response.content.decode()
        assert not [s for s in SECRETS if s in page], path
    change = client.get(f"/admin/jobs/deadletter/{letter.pk}/change/").content.decode()
    assert "legacy-1" in change and "&lt;redacted&gt;" in change  # shown, minus the secrets


def test_the_dead_letters_command_shows_arguments_redacted(planted_rows):
    letter, _ = planted_rows
    output = command_output("dead_letters", "show", str(letter.pk)) + command_output("dead_letters", "list")
    assert "legacy-1" in output and not [s for s in SECRETS if s in output]


def test_every_publish_path_names_the_arguments_only(planted_rows, monkeypatch):
    """What worker logs, events, `celery inspect` and Flower show of a task:
    the outbox relay and a replay set the same names-only repr as apply_async."""
    from apps.jobs import outbox
    from apps.jobs.services import dead_letter_replay

    letter, message = planted_rows
    sent = []

    def send_task(self, name, args=None, kwargs=None, **options):
        sent.append(options)
        return type("Result", (), {"id": "replayed-1"})()

    monkeypatch.setattr(celery.Celery, "send_task", send_task)
    monkeypatch.setattr(outbox, "_producer", lambda: None)
    outbox.publish(message)
    dead_letter_replay(dead_letter=letter)
    assert [(o["argsrepr"], o["kwargsrepr"]) for o in sent] == [
        ("(<0 args>)", "{'to': ..., 'template': ..., 'effect_key': ..., 'context': ..., 'api_key': ...}"),
        ("(<1 args>)", "{'to': ..., 'template': ..., 'effect_key': ..., 'context': ..., 'api_key': ...}")]
