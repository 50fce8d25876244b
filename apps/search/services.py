"""Keeping the search index up to date."""

from __future__ import annotations

from django.db import connections, transaction

from apps.tenancy.routers import tenant_write_alias

SEARCH_CONFIG = "english"

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


def search_index_after_commit(document_ids: list[int]) -> None:
    """Index after the surrounding transaction commits (never for a rollback)."""
    from apps.tenancy.activation import tenant_activated
    from apps.tenancy.context import require_active_tenant

    tenant = require_active_tenant()
    ids = list(document_ids)

    def index() -> None:
        with tenant_activated(tenant):  # the callback may run after the request's tenant is gone
            search_index_documents(ids)

    transaction.on_commit(index, using=tenant_write_alias(tenant))
