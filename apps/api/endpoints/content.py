"""Document endpoints: CRUD with optimistic locking, conditional GET, cursor
pages, filters and ordering, bulk create."""

from __future__ import annotations

import hashlib
import json

from django.utils import timezone
from django.utils.http import http_date
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.api.pagination import PageQuery, TenantCursorPagination, paginated
from apps.api.serializers import InstantField, StrictSerializer, validated
from apps.api.views import IF_MATCH, TenantAPIView, query_parameters
from apps.content import selectors, services
from apps.content.models import Document
from apps.http.errors import NotFound, PreconditionFailed, PreconditionRequired
from apps.tenancy import tenant_cache

ORDERINGS = {"created_at", "-created_at", "updated_at", "-updated_at", "title", "-title"}


def etag_of(document: Document) -> str:
    return f'"{document.version}"'


def etag_of_data(data) -> str:
    return 'W/"' + hashlib.md5(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest() + '"'


def conditional(request, response: Response, etag: str) -> Response:
    """304 when the client's If-None-Match already names this representation."""
    candidates = [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]
    if etag in candidates or etag.removeprefix("W/") in candidates or "*" in candidates:
        response = Response(status=status.HTTP_304_NOT_MODIFIED)
    response["ETag"] = etag
    return response


def expected_version(request) -> int | None:
    """The version an update or delete is based on, from If-Match.

    Missing -> 428; "*" -> None (any version); anything unparsable -> 412.
    """
    header = request.headers.get("If-Match")
    if header is None:
        raise PreconditionRequired("Send If-Match with the document's ETag (from GET) to change or delete it.")
    if header.strip() == "*":
        return None
    value = header.strip().removeprefix("W/").strip('"')
    if not (value.isascii() and value.isdigit()):  # "²".isdigit() is true, and int("²") raises
        raise PreconditionFailed("If-Match must be the document's ETag, e.g. \"3\".")
    return int(value)


class DocumentOutput(serializers.ModelSerializer):
    class Meta:
        model = Document
        fields = ["id", "title", "body", "tags", "status", "author_id", "version", "created_at", "updated_at"]


def _timestamp(value) -> str:
    # What DRF's DateTimeField gives: current time zone, ISO 8601, "Z" for UTC.
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def document_data(document: Document) -> dict:
    """DocumentOutput's representation, built directly: the detail read is
    the hottest path of the API, and the serializer's per-field machinery
    was a tenth of its time. DocumentOutput stays the schema (and the
    output of the other endpoints); a test holds the two equal."""
    return {"id": document.pk, "title": document.title, "body": document.body,
            "tags": [str(tag) for tag in document.tags], "status": document.status,
            "author_id": document.author_id, "version": document.version,
            "created_at": _timestamp(document.created_at), "updated_at": _timestamp(document.updated_at)}


class DocumentInput(StrictSerializer):
    title = serializers.CharField(max_length=300)
    body = serializers.CharField(required=False, allow_blank=True, default="", max_length=1_000_000)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list, max_length=20)
    status = serializers.ChoiceField(choices=Document.Status.choices, required=False, default=Document.Status.DRAFT)


class DocumentPatch(StrictSerializer):
    title = serializers.CharField(max_length=300, required=False)
    body = serializers.CharField(required=False, allow_blank=True, max_length=1_000_000)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=20)
    status = serializers.ChoiceField(choices=Document.Status.choices, required=False)


class DocumentFilters(PageQuery):
    status = serializers.ChoiceField(choices=Document.Status.choices, required=False)
    tag = serializers.CharField(max_length=50, required=False)
    author_id = serializers.IntegerField(required=False, min_value=1)
    q = serializers.CharField(max_length=200, required=False, help_text="title contains")
    created_after = InstantField(required=False)
    created_before = InstantField(required=False)
    ordering = serializers.ChoiceField(choices=sorted(ORDERINGS), required=False, default="-created_at")


class DocumentCursorPagination(TenantCursorPagination):
    def get_ordering(self, request, queryset, view):
        return (view.ordering_value,)


class DocumentListCreateApi(TenantAPIView):
    @query_parameters(DocumentFilters)
    @extend_schema(responses=paginated(DocumentOutput, "DocumentPage"), operation_id="documents_list")
    def get(self, request):
        filters = dict(self.query)
        self.ordering_value = filters.pop("ordering")
        filters.pop("cursor", None)
        filters.pop("page_size", None)

        def page_data():
            documents = selectors.document_list(
                status=filters.get("status"), tag=filters.get("tag"), author_id=filters.get("author_id"),
                title_contains=filters.get("q"), created_after=filters.get("created_after"),
                created_before=filters.get("created_before"),
            )
            paginator = DocumentCursorPagination()
            page = paginator.paginate_queryset(documents, request, view=self)
            return dict(paginator.get_paginated_response(DocumentOutput(page, many=True).data).data)

        data = tenant_cache.get_or_compute("documents", f"list:{request.get_full_path()}", page_data)
        return conditional(request, Response(data), etag_of_data(data))

    @extend_schema(request=DocumentInput, responses={201: DocumentOutput}, operation_id="documents_create")
    def post(self, request):
        data = validated(DocumentInput, request.data)
        document = services.document_create(author_id=request.user.pk, **data)
        response = Response(DocumentOutput(document).data, status=status.HTTP_201_CREATED)
        response["ETag"] = etag_of(document)
        response["Location"] = f"/api/v1/documents/{document.pk}"
        return response


class DocumentDetailApi(TenantAPIView):
    def cache_prefetch(self, request) -> tuple[str, str] | None:
        """The cached entry a GET reads, fetched in the rate limit's round trip."""
        return ("documents", f"doc:{self.kwargs['document_id']}") if request.method in ("GET", "HEAD") else None

    def _get(self, document_id: int) -> Document:
        document = selectors.document_get(document_id=document_id)
        if document is None:
            raise NotFound(f"No document {document_id}.")
        return document

    @extend_schema(responses={200: DocumentOutput, 304: None}, operation_id="documents_retrieve")
    def get(self, request, document_id: int):
        def detail():
            document = selectors.document_get(document_id=document_id)
            return None if document is None else {"data": document_data(document), "etag": etag_of(document),
                                                  "modified": document.updated_at}

        cached = tenant_cache.get_or_compute("documents", f"doc:{document_id}", detail)
        if cached is None:
            raise NotFound(f"No document {document_id}.")
        response = conditional(request, Response(cached["data"]), cached["etag"])
        response["Last-Modified"] = http_date(cached["modified"].timestamp())
        return response

    @extend_schema(request=DocumentPatch, responses={200: DocumentOutput}, operation_id="documents_update",
                   parameters=[IF_MATCH])
    def patch(self, request, document_id: int):
        changes = validated(DocumentPatch, request.data)
        version = expected_version(request)
        document = services.document_update(document_id=document_id, expected_version=version, changes=changes)
        response = Response(DocumentOutput(document).data)
        response["ETag"] = etag_of(document)
        return response

    @extend_schema(responses={204: None}, operation_id="documents_destroy", parameters=[IF_MATCH])
    def delete(self, request, document_id: int):
        services.document_delete(document_id=document_id, expected_version=expected_version(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DocumentBulkCreateApi(TenantAPIView):
    rate_scope = "bulk"
    class DocumentBulkInput(StrictSerializer):
        documents = DocumentInput(many=True, allow_empty=False, max_length=services.BULK_LIMIT)

    class DocumentBulkOutput(serializers.Serializer):
        created = serializers.IntegerField()
        ids = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(request=DocumentBulkInput, responses={201: DocumentBulkOutput}, operation_id="documents_bulk_create")
    def post(self, request):
        data = validated(self.DocumentBulkInput, request.data)
        items = [services.DocumentInput(title=d["title"], body=d["body"], tags=tuple(d["tags"]), status=d["status"])
                 for d in data["documents"]]
        created = services.document_bulk_create(documents=items, author_id=request.user.pk)
        return Response({"created": len(created), "ids": [d.pk for d in created]}, status=status.HTTP_201_CREATED)
