"""Tenant content. Every table here lives in the tenant's own schema."""

from __future__ import annotations

from django.db import models


class Document(models.Model):
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    # A global user's id. Users live in the control plane; a foreign key
    # cannot span the control database and a tenant's schema/shard.
    author_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title
