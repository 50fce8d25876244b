"""The tenant's audit log: who changed what, when, from which request.

Append-only and range-partitioned by month on ``occurred_at`` (created by SQL
in the migration: Django has no declarative partitioning). The primary key is
(id, occurred_at) because a partitioned table's unique keys must contain the
partition key; Django addresses rows by ``id``, which the identity column
keeps unique.
"""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        ACCESS = "access"  # a request made under support access (apps.accounts.support)

    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField(db_index=True)
    # user | api_key | system | support (an operator under a support grant)
    # | operator (an operator acting on the tenant from the operator admin)
    actor_type = models.CharField(max_length=20)
    actor_id = models.BigIntegerField(null=True, blank=True)  # a global user's id
    api_key_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    request_id = models.CharField(max_length=128, blank=True, default="")
    # {field: [before, after]}; for create only "after" values, for delete only "before".
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "audit_entry"
        ordering = ["-occurred_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id} by {self.actor_type}:{self.actor_id}"
