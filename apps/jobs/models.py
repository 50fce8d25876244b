"""Control-plane records of the task system."""

from __future__ import annotations

import uuid

from django.db import models


class DeadLetter(models.Model):
    """A task that failed for good: kept until an operator replays or discards it."""

    class Status(models.TextChoices):
        DEAD = "dead"
        REPLAYED = "replayed"
        DISCARDED = "discarded"

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64)
    queue = models.CharField(max_length=100, blank=True, default="")
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    tenant_slug = models.CharField(max_length=40, blank=True, default="")
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    headers = models.JSONField(default=dict)
    exception = models.TextField()
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DEAD, db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_task_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-last_failed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.tenant_slug or '-'}] {self.exception[:60]}"


class Effect(models.Model):
    """An outside effect (an email sent, say) keyed so that it happens once,
    however often its task runs."""

    key = models.CharField(max_length=200, unique=True)
    task_name = models.CharField(max_length=200, blank=True, default="")
    done = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)
    # The runner doing the effect holds a lease (renewed while it runs), so
    # two redeliveries never run it at once and a runner that died leaves a
    # claim that lapses; the token tells the holder's own claim from a successor's.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)


class AbstractOutboxMessage(models.Model):
    """A task to send once the transaction that wrote this row commits."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # becomes the task id
    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # A relay that took the row to publish it holds it until then, outside any
    # transaction; if that relay dies the claim lapses and the sweep sends it.
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["created_at"]


class OutboxMessage(AbstractOutboxMessage):
    """Outbox of control-plane changes (invitations, ...)."""
