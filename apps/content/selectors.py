"""Reads of documents. Callers must have a tenant active."""

from __future__ import annotations

from .models import Document


def document_get(*, document_id: int) -> Document | None:
    return Document.objects.filter(pk=document_id).first()


def document_list(*, status: str | None = None, tag: str | None = None, author_id: int | None = None,
                  title_contains: str | None = None, created_after=None, created_before=None):
    documents = Document.objects.all()
    if status:
        documents = documents.filter(status=status)
    if tag:
        documents = documents.filter(tags__contains=[tag.lower()])
    if author_id is not None:
        documents = documents.filter(author_id=author_id)
    if title_contains:
        documents = documents.filter(title__icontains=title_contains)
    if created_after:
        documents = documents.filter(created_at__gte=created_after)
    if created_before:
        documents = documents.filter(created_at__lt=created_before)
    return documents


def document_count() -> int:
    return Document.objects.count()
