"""Tenant webhooks: endpoints, events, deliveries and their attempts.

Every table here lives in the tenant's own schema (TENANT_APPS), on its
shard: an event is written in the same transaction as the change it
announces, a move carries a tenant's endpoints and backlog with it, and no
query of one tenant can reach another's rows. Why that rather than one
delivery table per shard: docs/webhooks.md.
"""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models

EVENT_ID_MARK = "evt_"


class Endpoint(models.Model):
    """Where a tenant wants its events, and which ones."""

    class DisabledReason(models.TextChoices):
        NONE = "", "-"
        MANUAL = "manual", "Disabled by the tenant"
        FAILING = "failing", "Failing for too long"

    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    # Event types wanted; ["*"] is every type, present and future.
    event_types = ArrayField(models.CharField(max_length=60), default=list)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=20, blank=True, default="", choices=DisabledReason.choices)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # The first failure since the last success; cleared by a success.
    failing_since = models.DateTimeField(null=True, blank=True)
    # The signing secret is not stored: it is an HMAC of this seed under
    # SECRET_KEY (apps/webhooks/signing.py), shown once when made; the hash
    # tells which key (current or a fallback) derives it.
    secret_seed = models.CharField(max_length=64)
    secret_hash = models.CharField(max_length=64)
    # During a rotation the previous secret signs too, until it expires.
    previous_secret_seed = models.CharField(max_length=64, blank=True, default="")
    previous_secret_hash = models.CharField(max_length=64, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    created_by_id = models.BigIntegerField(null=True, blank=True)  # a global user's id
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"endpoint {self.pk}"

    def wants(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types


class Event(models.Model):
    """A change of the tenant's data, as its webhooks announce it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=60)
    schema_version = models.PositiveSmallIntegerField(default=1)
    object_type = models.CharField(max_length=30)
    object_id = models.CharField(max_length=64)
    # Grows with each change of one object (the database clock, in
    # microseconds, when the change was written): receivers drop an event
    # older than one they already have for the object.
    sequence = models.BigIntegerField()
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written by the change's transaction as false; the tenant's delivery run
    # makes its deliveries (one per endpoint that wants it) and sets it.
    fanned_out = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_at", "id"], name="webhooks_event_created"),
            models.Index(fields=["sequence", "id"], name="webhooks_event_fresh", condition=models.Q(fanned_out=False)),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"

    @property
    def public_id(self) -> str:
        return EVENT_ID_MARK + self.id.hex


class Delivery(models.Model):
    """One event on its way to one endpoint."""

    class State(models.TextChoices):
        # Behind an earlier event of the same object to the same endpoint: it
        # becomes pending when that one is delivered or given up, so one
        # object's events arrive in order.
        WAITING = "waiting"
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up: retried for WEBHOOKS_RETRY_FOR_SECONDS

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    # Copied from the event: one object's events wait for each other per endpoint.
    object_key = models.CharField(max_length=100)
    sequence = models.BigIntegerField()
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # A run that took it holds it until then (a run that died lets go so).
    claimed_until = models.DateTimeField(null=True, blank=True)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="webhooks_delivery_once")]
        indexes = [
            models.Index(fields=["next_attempt_at", "id"], name="webhooks_delivery_due",
                         condition=models.Q(state="pending")),
            models.Index(fields=["endpoint", "object_key", "sequence"], name="webhooks_delivery_order",
                         condition=models.Q(state__in=["pending", "waiting"])),
            models.Index(fields=["endpoint", "state", "created_at"], name="webhooks_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.state})"


class Attempt(models.Model):
    """One try of a delivery: what was answered and how long it took."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    error = models.CharField(max_length=300, blank=True, default="")
    # The first bytes of the answer, never all of it.
    response_excerpt = models.CharField(max_length=1000, blank=True, default="")

    class Meta:
        ordering = ["delivery_id", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
