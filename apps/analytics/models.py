"""Product events (write model) and their daily rollups (read model).

Events are append-only and range-partitioned by month (SQL in the
migration). Usage endpoints never scan them: they read DailyRollup, which
ingestion updates in the same transaction (CQRS).
"""

from __future__ import annotations

from django.db import models


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField()
    event_type = models.CharField(max_length=100)
    properties = models.JSONField(default=dict)
    received_at = models.DateTimeField()

    class Meta:
        db_table = "analytics_event"
        ordering = ["-occurred_at", "-id"]


class DailyRollup(models.Model):
    day = models.DateField()
    event_type = models.CharField(max_length=100)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "event_type"], name="analytics_rollup_day_type")]
        ordering = ["day", "event_type"]
