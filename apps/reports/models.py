"""Export requests: documents or events as CSV or XLSX, produced off the request path."""

from __future__ import annotations

import uuid

from django.db import models


class ExportRequest(models.Model):
    class Kind(models.TextChoices):
        DOCUMENTS = "documents"
        EVENTS = "events"

    class Format(models.TextChoices):
        CSV = "csv"
        XLSX = "xlsx"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.CSV)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(null=True, blank=True)
    file_name = models.CharField(max_length=255, blank=True, default="")
    error = models.TextField(blank=True, default="")
    # How many times a worker started this export: more than one means it
    # was retried or redelivered (its worker died mid-way).
    attempts = models.PositiveIntegerField(default=0)
    # The running export's last sign of progress; long silent = stalled.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    requested_by_id = models.BigIntegerField(null=True, blank=True)  # a global user's id
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
