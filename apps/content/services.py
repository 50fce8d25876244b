"""Writes to documents. Callers must have a tenant active.

Each write is one transaction on the tenant's shard with its audit entry
and its typed event (document.created/updated/deleted, recorded for webhooks
in that transaction); its "documents.changed" event (which search subscribes
to) follows after commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from apps.accounts.selectors import owner_emails
from apps.audit.services import audit_record, audit_record_many, diff, snapshot
from apps.billing.services import quota_enforce, quota_warn_if_crossed
from apps.http.errors import NotFound, PreconditionFailed
from apps.outbox.services import tenant_event_emit, tenant_events_emit
from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias
from apps.tenancy.tenant_cache import invalidate

from .models import AUDITED_FIELDS, Document

MAX_TAGS = 20
BULK_LIMIT = 500
BULK_BATCH_SIZE = 100
UPDATABLE = {"title", "body", "tags", "status"}


@dataclass(frozen=True)
class DocumentInput:
    title: str
    body: str = ""
    tags: tuple[str, ...] = ()
    status: str = Document.Status.DRAFT


def _clean(values: dict) -> dict:
    errors = {}
    if "title" in values:
        values["title"] = (values["title"] or "").strip()
        if not values["title"]:
            errors["title"] = "A document needs a title."
        elif len(values["title"]) > 300:
            errors["title"] = "A title is at most 300 characters."
    if "tags" in values:
        tags = [t.strip().lower() for t in values["tags"] or []]
        if len(tags) > MAX_TAGS or any(not t or len(t) > 50 for t in tags):
            errors["tags"] = f"At most {MAX_TAGS} tags of 1-50 characters."
        values["tags"] = sorted(set(tags))
    if "status" in values and values["status"] not in Document.Status.values:
        errors["status"] = f"Choose one of {', '.join(Document.Status.values)}."
    if errors:
        raise ValidationError(errors)
    return values


QUOTA_WARNING_RATIO = 0.8


def _enforce_document_quota(adding: int) -> None:
    """Refuse past the plan's limit; warn the owners once usage crosses 80%."""
    tenant = require_active_tenant()
    used = Document.objects.count()
    quota_enforce(tenant=tenant, quota="documents", used=used, adding=adding)
    quota_warn_if_crossed(tenant=tenant, quota="documents", before=used, after=used + adding,
                          ratio=QUOTA_WARNING_RATIO, recipients=lambda: owner_emails(tenant_id=tenant.pk))


def document_create(
    *, title: str, body: str = "", tags=(), status: str = Document.Status.DRAFT, author_id: int | None = None
) -> Document:
    values = _clean({"title": title, "body": body or "", "tags": list(tags), "status": status})
    with transaction.atomic(using=tenant_write_alias()):
        _enforce_document_quota(1)
        document = Document.objects.create(author_id=author_id, **values)
        audit_record(action="create", object_type="document", object_id=document.pk,
                     changes=diff({}, snapshot(document, AUDITED_FIELDS)))
        documents_changed([document.pk])
        tenant_events_emit("document.created", [document_event(document)])
        invalidate("documents", "usage")
    return document


def document_bulk_create(*, documents: list[DocumentInput], author_id: int | None = None) -> list[Document]:
    """Create up to BULK_LIMIT documents in one transaction, inserted in batches."""
    if not documents:
        raise ValidationError({"documents": "Send at least one document."})
    if len(documents) > BULK_LIMIT:
        raise ValidationError({"documents": f"At most {BULK_LIMIT} documents per request."})
    rows = []
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(documents):
        try:
            values = _clean({"title": item.title, "body": item.body, "tags": list(item.tags), "status": item.status})
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors[f"documents[{index}].{field}"] = messages
            continue
        rows.append(Document(author_id=author_id, **values))
    if errors:
        raise ValidationError(errors)
    with transaction.atomic(using=tenant_write_alias()):
        _enforce_document_quota(len(rows))
        created = Document.objects.bulk_create(rows, batch_size=BULK_BATCH_SIZE)
        audit_record_many(action="create", object_type="document",
                          items=[(d.pk, diff({}, snapshot(d, AUDITED_FIELDS))) for d in created])
        documents_changed([d.pk for d in created])
        tenant_events_emit("document.created", [document_event(d) for d in created])
        invalidate("documents", "usage")
    return created


def _locked_at_version(document_id: int, expected_version: int | None) -> Document:
    """The document, row-locked for this transaction, if still at ``expected_version``
    (None: any version). Raises NotFound or PreconditionFailed."""
    document = Document.objects.select_for_update().filter(pk=document_id).first()
    if document is None:
        raise NotFound(f"No document {document_id}.")
    if expected_version is not None and document.version != expected_version:
        raise PreconditionFailed(
            f"The document changed since version {expected_version}; it is at version {document.version}. "
            "Fetch it again and retry with its ETag.",
            current_version=document.version,
        )
    return document


def document_update(*, document_id: int, expected_version: int | None, changes: dict) -> Document:
    """Apply ``changes`` if the document is still at ``expected_version``.

    None skips the check (If-Match: *). A stale version raises
    PreconditionFailed carrying the current version.
    """
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValidationError({name: "This field cannot be changed." for name in unknown})
    changes = _clean(dict(changes))
    with transaction.atomic(using=tenant_write_alias()):
        document = _locked_at_version(document_id, expected_version)
        before = snapshot(document, AUDITED_FIELDS)
        for name, value in changes.items():
            setattr(document, name, value)
        document.version = F("version") + 1
        document.save()
        document.refresh_from_db()
        changed = diff(before, snapshot(document, AUDITED_FIELDS))
        audit_record(action="update", object_type="document", object_id=document.pk, changes=changed)
        documents_changed([document.pk])
        tenant_events_emit("document.updated",
                           [document_event(document, changed=sorted(set(changed) - {"version"}))])
        invalidate("documents")
    return document


def document_delete(*, document_id: int, expected_version: int | None) -> None:
    with transaction.atomic(using=tenant_write_alias()):
        document = _locked_at_version(document_id, expected_version)
        before = snapshot(document, AUDITED_FIELDS)
        document.delete()
        audit_record(action="delete", object_type="document", object_id=document_id, changes=diff(before, {}))
        tenant_events_emit("document.deleted", [{"object_id": document_id,
                                                 "data": {"id": document_id, "version": document.version}}])
        # The entry went with the row (cascade); nothing to index.
        invalidate("documents", "usage")


def document_event(document: Document, **extra) -> dict:
    """A document.created/updated event item: the document as the API shows it
    (payload schema: apps/webhooks/catalogue.py)."""
    return {"object_id": document.pk, "data": {
        "id": document.pk, "title": document.title, "body": document.body, "tags": list(document.tags),
        "status": document.status, "author_id": document.author_id, "version": document.version,
        "created_at": document.created_at.isoformat(), "updated_at": document.updated_at.isoformat(), **extra}}


def documents_changed(document_ids: list[int]) -> None:
    """Announce, in the current transaction, that these documents changed
    (created, updated or deleted): subscribers (the search index) follow
    after commit."""
    tenant_event_emit("documents.changed", args=[sorted(set(document_ids))])
