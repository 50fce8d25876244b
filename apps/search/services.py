"""Keeping the search index up to date."""

from __future__ import annotations

from django.db import connections, transaction

from apps.tenancy.routers import tenant_write_alias

SEARCH_CONFIG = "english"

# ``indexed_version <=`` (not ``<``): a rebuild rewrites entries of the same version.
_UPSERT = f"""
INSERT INTO search_searchentry (document_id, vector, indexed_version, indexed_at)
SELECT d.id,
       setweight(to_tsvector('{SEARCH_CONFIG}', coalesce(d.title, '')), 'A')
    || setweight(to_tsvector('{SEARCH_CONFIG}', array_to_string(d.tags, ' ')), 'B')
    || setweight(to_tsvector('{SEARCH_CONFIG}', coalesce(d.body, '')), 'C'),
       d.version, now()
FROM content_document d WHERE d.id = ANY(%s)
ON CONFLICT (document_id) DO UPDATE
SET vector = EXCLUDED.vector, indexed_version = EXCLUDED.indexed_version, indexed_at = EXCLUDED.indexed_at
WHERE search_searchentry.indexed_version <= EXCLUDED.indexed_version
"""


def search_index_documents(document_ids: list[int]) -> int:
    """(Re)index these documents of the active tenant, in one statement.

    Idempotent, and an older version never overwrites a newer one, so it is
    safe to run twice or out of order.
    """
    if not document_ids:
        return 0
    with connections[tenant_write_alias()].cursor() as cursor:
        cursor.execute(_UPSERT, [list(document_ids)])
        return cursor.rowcount


def search_rebuild(*, batch_size: int = 500, restart: bool = False, progress=lambda done, total: None):
    """Rebuild the active tenant's index in batches, resumable from a checkpoint.

    Each batch commits with its checkpoint, so a crash resumes after the last
    committed batch. Searches keep working throughout: entries are replaced
    row by row, never dropped wholesale.
    """
    from django.utils import timezone

    from apps.content.models import Document

    from .models import IndexRebuild

    alias = tenant_write_alias()
    rebuild = IndexRebuild.objects.filter(finished_at__isnull=True).order_by("-started_at").first()
    if rebuild is None or restart:
        IndexRebuild.objects.filter(finished_at__isnull=True).update(finished_at=timezone.now(), abandoned=True)
        rebuild = IndexRebuild.objects.create(total=Document.objects.count())
    while True:
        ids = list(Document.objects.filter(pk__gt=rebuild.last_document_id).order_by("pk")
                   .values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic(using=alias):
            search_index_documents(ids)
            rebuild.last_document_id = ids[-1]
            rebuild.done += len(ids)
            rebuild.save(update_fields=["last_document_id", "done"])
        progress(rebuild.done, rebuild.total)
    rebuild.finished_at = timezone.now()
    rebuild.save(update_fields=["finished_at"])
    return rebuild
