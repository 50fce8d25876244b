"""Full-text index of a tenant's documents (PostgreSQL tsvector + GIN)."""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models


class SearchEntry(models.Model):
    """One row per document: its weighted tsvector (title A, tags B, body C).

    Kept apart from the document so that indexing (asynchronous, after
    commit) never rewrites or locks the document row.
    """

    document = models.OneToOneField("content.Document", on_delete=models.CASCADE, primary_key=True,
                                    related_name="search_entry")
    vector = SearchVectorField()
    indexed_version = models.PositiveIntegerField(default=0)
    indexed_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [GinIndex(fields=["vector"], name="search_entry_vector_gin")]


class IndexRebuild(models.Model):
    """Progress of a rebuild of this tenant's index: the resume checkpoint."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    abandoned = models.BooleanField(default=False)
    last_document_id = models.BigIntegerField(default=0)
    done = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
