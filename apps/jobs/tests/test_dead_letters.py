"""Operators' handling of dead letters: commands and admin."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from apps.jobs.models import DeadLetter
from tests.support import command_output

pytestmark = pytest.mark.django_db


def letter(**fields) -> DeadLetter:
    now = timezone.now()
    values = dict(task_name="notifications.send_email", task_id="t-1", queue="emails", tenant_id=None,
                  tenant_slug="alpha", args=[], kwargs={"to": ["x@example.com"]}, headers={"tenant_slug": "alpha"},
                  exception="RetryLater: email provider failed", traceback="Traceback ...", attempts=9,
                  first_failed_at=now - dt.timedelta(hours=1), last_failed_at=now)
    values.update(fields)
    return DeadLetter.objects.create(**values)


def test_list_and_show(tenants):
    first = letter()
    letter(task_name="search.index_documents", tenant_slug="beta")
    listing = command_output("dead_letters", "list")
    assert "notifications.send_email" in listing and "search.index_documents" in listing and "2 dead letter(s)" in listing
    assert "1 dead letter(s)" in command_output("dead_letters", "list", "--tenant", "beta")
    shown = command_output("dead_letters", "show", str(first.pk))
    assert "RetryLater: email provider failed" in shown and '"x@example.com"' in shown and "attempts         9" in shown
    with pytest.raises(CommandError, match="No dead letter 999999"):
        command_output("dead_letters", "show", "999999")


def test_replay_sends_again_with_the_original_tenant(tenants):
    from config.celery_app import app

    dead = letter(headers={"tenant_id": tenants["alpha"].pk, "tenant_slug": "alpha"})
    with pytest.raises(CommandError, match="Name dead letter ids"):
        command_output("dead_letters", "replay")
    output = command_output("dead_letters", "replay", str(dead.pk))
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.REPLAYED and dead.replay_task_id in output
    with app.connection_for_read() as connection:
        message = connection.SimpleQueue("emails", no_ack=True).get(timeout=5)
        assert message.headers["tenant_id"] == tenants["alpha"].pk
        assert message.headers["task"] == "notifications.send_email"
    # Replaying it again does nothing: it is no longer dead.
    assert "0 replayed" in command_output("dead_letters", "replay", str(dead.pk))


def test_purge(tenants):
    old = letter(last_failed_at=timezone.now() - dt.timedelta(days=40))
    new = letter()
    assert "1 dead letter(s) purged" in command_output("dead_letters", "purge", "--all", "--older-than-days", "30")
    assert not DeadLetter.objects.filter(pk=old.pk).exists() and DeadLetter.objects.filter(pk=new.pk).exists()


def test_admin_lists_and_discards(tenants, django_user_model):
    dead = letter()
    django_user_model.objects.create_superuser(email="ops@platform.test", password="ops-pass")
    ops = Client(HTTP_HOST="localhost")
    ops.post("/admin/login/?next=/admin/", {"username": "ops@platform.test", "password": "ops-pass"})
    assert b"notifications.send_email" in ops.get("/admin/jobs/deadletter/").content
    confirm = ops.post("/admin/jobs/deadletter/", {"action": "discard", "_selected_action": [dead.pk]})
    # The operator console confirms, with a reason, before anything happens.
    assert "/admin/console/dead-letters/confirm/" in confirm["Location"]
    ops.post("/admin/console/dead-letters/confirm/", {"operation": "discard", "ids": str(dead.pk), "reason": "obsolete"})
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.DISCARDED
