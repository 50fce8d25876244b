"""Whole-tenant exports and offboardings (control plane).

Both live in the control database, not in the tenant's schema: an export
reads the schema from outside (and must not export its own progress), and an
offboarding's record has to outlive the schema it erases.
"""

from __future__ import annotations

import uuid

from django.db import models


class TenantExport(models.Model):
    """One archive of a whole tenant, with its per-table checkpoint.

    ``tables`` holds, for each table (and control-plane part) already written
    to the work directory, its rows, bytes and SHA-256: a worker that dies
    mid-way leaves them, and the next attempt skips those parts.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    tables = models.JSONField(default=dict, blank=True)
    parts_total = models.PositiveIntegerField(default=0)
    current_part = models.CharField(max_length=200, blank=True, default="")
    rows_done = models.BigIntegerField(default=0)
    # The schema's size by the server's statistics when the export began (progress only).
    rows_estimate = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    file_name = models.CharField(max_length=255, blank=True, default="")
    size_bytes = models.BigIntegerField(default=0)
    manifest_sha256 = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    requested_by_id = models.BigIntegerField(null=True, blank=True)  # a global user's id; null for a command
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"tenant export {self.pk} of {self.tenant_id} ({self.status})"

    @property
    def parts_done(self) -> int:
        # The checkpoint also holds the schema's migration state ("_migrations"), not a part.
        return len([name for name in self.tables if not name.startswith("_")])


class Offboarding(models.Model):
    """A tenant's deletion: asked for, kept for a grace period, then erased.

    The row is the erasure record and stays after the tenant is gone, so the
    tenant is named by id, slug and schema, not by a foreign key. It holds
    what was erased (``erased``), when, and who asked; the asker's email is
    replaced by a pseudonym when the erasure removes that person too.
    """

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"  # suspended, within the grace period; undo possible
        CANCELLED = "cancelled"  # undone: the tenant is back
        ERASING = "erasing"
        ERASED = "erased"
        FAILED = "failed"  # an erasure attempt failed; the next beat run tries again

    OPEN = (Status.SCHEDULED, Status.ERASING, Status.FAILED)

    tenant_id = models.BigIntegerField(db_index=True)
    tenant_slug = models.CharField(max_length=40)
    schema_name = models.CharField(max_length=63)
    shard_name = models.CharField(max_length=40, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SCHEDULED)
    # Who asked: "owner", "operator" or "command", the user's id and email.
    requested_as = models.CharField(max_length=20)
    requested_by_id = models.BigIntegerField(null=True, blank=True)
    requested_by = models.CharField(max_length=254, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    # The tenant's status before it was suspended for this, restored by an undo.
    previous_status = models.CharField(max_length=20, default="active")
    requested_at = models.DateTimeField(auto_now_add=True)
    erase_after = models.DateTimeField()
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.CharField(max_length=254, blank=True, default="")
    erased_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    erased = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id"], condition=models.Q(status__in=["scheduled", "erasing",
                                                                                        "failed"]),
                                    name="lifecycle_offboarding_one_open_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"offboarding of {self.tenant_slug} ({self.status})"


class SubjectRequest(models.Model):
    """One person's request about their data across every tenant: a copy of
    it, or its erasure. Kept as the record; the person is named by a
    pseudonym once erased."""

    class Kind(models.TextChoices):
        EXPORT = "export"
        ERASE = "erase"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    subject = models.CharField(max_length=254)  # the email, or its pseudonym after an erasure
    user_id = models.BigIntegerField(null=True, blank=True)
    requested_by = models.CharField(max_length=254)
    reason = models.TextField(blank=True, default="")
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} of {self.subject}"
