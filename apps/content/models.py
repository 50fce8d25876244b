"""Tenant content. Every table here lives in the tenant's own schema."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models


class Document(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        PUBLISHED = "published"
        ARCHIVED = "archived"

    title = models.CharField(max_length=300)
    body = models.TextField(blank=True, default="")
    tags = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    # A global user's id. Users live in the control plane; a foreign key
    # cannot span the control database and a tenant's schema/shard.
    author_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    # Optimistic locking: every change increments it; the API's ETag.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [GinIndex(fields=["tags"], name="content_doc_tags_gin")]

    def __str__(self) -> str:
        return self.title


AUDITED_FIELDS = ("title", "body", "tags", "status", "author_id", "version")
