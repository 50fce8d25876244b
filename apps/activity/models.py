"""The tenant's activity log: append-only, range-partitioned by month.

The table is created by SQL in the migration (Django has no declarative
partitioning): PARTITION BY RANGE (occurred_at), primary key (id,
occurred_at) because a partitioned table's unique keys must include the
partition key. Django only ever addresses rows by ``id``, which the identity
column keeps unique. Partitions are made ahead and retired by
``apps.activity.partitions``.
"""

from __future__ import annotations

from django.db import models


class ActivityEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField(db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True)  # a global user's id
    verb = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "activity_event"
        ordering = ["-occurred_at", "-id"]

    def __str__(self) -> str:
        return f"{self.verb} {self.object_type}:{self.object_id} at {self.occurred_at:%Y-%m-%d %H:%M}"
