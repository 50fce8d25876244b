"""Control-plane records of the back office."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class OperatorAction(models.Model):
    """One thing an operator did from the console: who, when, why, to what,
    and how it went. Written by the console's services in the same
    transaction as the change where there is one, so a change without its
    record (or a record of a change that rolled back) cannot exist."""

    class Kind(models.TextChoices):
        TENANT_SUSPEND = "tenant.suspend", "Suspend tenant"
        TENANT_RESUME = "tenant.resume", "Resume tenant"
        TENANT_MOVE = "tenant.move", "Move tenant"
        TENANT_REINDEX = "tenant.reindex", "Rebuild search index"
        TENANT_EXPORT = "tenant.export", "Export tenant data"
        TENANT_SUPPORT = "tenant.support", "Grant support access"
        SHARD_DRAIN = "shard.drain", "Drain shard"
        SHARD_REBALANCE = "shard.rebalance", "Rebalance shards"
        DEAD_LETTER_REPLAY = "dead_letter.replay", "Replay dead letters"
        DEAD_LETTER_DISCARD = "dead_letter.discard", "Discard dead letters"
        TENANT_OFFBOARD = "tenant.offboard", "Offboard tenant"
        TENANT_OFFBOARD_UNDO = "tenant.offboard_undo", "Undo an offboarding"
        WEBHOOK_REPLAY = "webhook.replay", "Replay webhook deliveries"

    class Outcome(models.TextChoices):
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=40, choices=Kind.choices, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+")
    # Kept as text too: the record outlives the operator's account.
    actor_email = models.CharField(max_length=254)
    reason = models.TextField()
    # What it was done to, readable without joins ("tenant alpha", "shard b", "3 dead letters").
    target = models.CharField(max_length=200)
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    shard_name = models.CharField(max_length=40, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.DONE)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.target} by {self.actor_email}"

    @property
    def move_ids(self) -> list[int]:
        return [int(i) for i in self.detail.get("moves", [])]
