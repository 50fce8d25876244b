"""Writes to tenant content. Callers must have a tenant active."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.activity.services import activity_record
from apps.tenancy.routers import tenant_write_alias

from .models import Document


def document_create(*, title: str, body: str = "", author_id: int | None = None) -> Document:
    title = (title or "").strip()
    if not title:
        raise ValidationError({"title": "A document needs a title."})
    if len(title) > 300:
        raise ValidationError({"title": "A title is at most 300 characters."})
    with transaction.atomic(using=tenant_write_alias()):
        document = Document.objects.create(title=title, body=body or "", author_id=author_id)
        activity_record(verb="document.created", actor_id=author_id, object_type="document", object_id=document.pk)
    return document
