from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.api.downloads import DownloadQuery, SignedDownloadApi
from apps.api.pagination import PageQuery, TenantCursorPagination, paginated
from apps.api.serializers import InstantField, StrictSerializer, validated
from apps.api.views import TenantAPIView, query_parameters
from apps.content.models import Document
from apps.http.errors import NotFound
from apps.reports import selectors, services
from apps.reports.models import ExportRequest


class ExportOutput(serializers.ModelSerializer):
    status_label = serializers.SerializerMethodField()
    stalled = serializers.SerializerMethodField()
    status_url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ExportRequest
        fields = ["id", "kind", "format", "filters", "status", "status_label", "attempts", "stalled", "heartbeat_at",
                  "rows_done", "rows_total", "error", "created_at", "finished_at", "status_url", "download_url"]

    def get_status_label(self, export) -> str:
        """The status for people: "running (attempt 2)" once retried, "stalled (attempt 1)" when silent."""
        return selectors.export_status_label(export)

    def get_stalled(self, export) -> bool:
        """Running with no progress for EXPORT_STALL_SECONDS (its worker probably died)."""
        return selectors.export_stalled(export)

    def get_status_url(self, export) -> str:
        return f"/api/v1/exports/{export.pk}"

    def get_download_url(self, export) -> str | None:
        """Signed, valid for EXPORT_DOWNLOAD_SECONDS; present once the file is ready."""
        if export.status != ExportRequest.Status.DONE:
            return None
        return services.download_url(self.context["tenant"], export)


class DocumentExportFilters(StrictSerializer):
    status = serializers.ChoiceField(choices=Document.Status.choices, required=False)
    tag = serializers.CharField(max_length=50, required=False)


class EventExportFilters(StrictSerializer):
    # Checked here, not in the worker: a bad time would fail the export there.
    type = serializers.CharField(max_length=100, required=False)
    since = InstantField(required=False)
    until = InstantField(required=False)


class DocumentExportInput(StrictSerializer):
    kind = serializers.ChoiceField(choices=[ExportRequest.Kind.DOCUMENTS])
    format = serializers.ChoiceField(choices=ExportRequest.Format.choices, default=ExportRequest.Format.CSV)
    filters = DocumentExportFilters(required=False)


class EventExportInput(StrictSerializer):
    kind = serializers.ChoiceField(choices=[ExportRequest.Kind.EVENTS])
    format = serializers.ChoiceField(choices=ExportRequest.Format.choices, default=ExportRequest.Format.CSV)
    filters = EventExportFilters(required=False)


# Which filters an export takes depends on its kind: one body per kind.
EXPORT_INPUTS = {ExportRequest.Kind.DOCUMENTS: DocumentExportInput, ExportRequest.Kind.EVENTS: EventExportInput}
EXPORT_CREATE_REQUEST = PolymorphicProxySerializer(
    component_name="ExportCreate", serializers={str(kind): serializer for kind, serializer in EXPORT_INPUTS.items()},
    resource_type_field_name="kind",
)


def export_input(data) -> dict:
    """The body validated by the serializer of its kind; times become ISO text for the stored filters."""
    kind = data.get("kind") if isinstance(data, dict) else None
    serializer = EXPORT_INPUTS.get(kind) if isinstance(kind, str) else None
    if serializer is None and isinstance(data, dict):
        raise ValidationError({"kind": [f"Choose one of {', '.join(ExportRequest.Kind.values)}."]})
    valid = validated(serializer or DocumentExportInput, data)
    filters = {name: value.isoformat() if hasattr(value, "isoformat") else value
               for name, value in valid.get("filters", {}).items()}
    return {**valid, "filters": filters}


class ExportListCreateApi(TenantAPIView):
    rate_scope = {"POST": "exports"}

    @query_parameters(PageQuery)
    @extend_schema(responses=paginated(ExportOutput, "ExportPage"), operation_id="exports_list")
    def get(self, request):
        paginator = TenantCursorPagination()
        page = paginator.paginate_queryset(ExportRequest.objects.all(), request, view=self)
        return paginator.get_paginated_response(ExportOutput(page, many=True, context={'tenant': request.tenant}).data)

    @extend_schema(request=EXPORT_CREATE_REQUEST, responses={202: ExportOutput}, operation_id="exports_create")
    def post(self, request):
        data = export_input(request.data)
        export = services.export_request(requested_by_id=request.user.pk, **data)
        response = Response(ExportOutput(export, context={'tenant': request.tenant}).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/exports/{export.pk}"
        return response


class ExportDetailApi(TenantAPIView):
    @extend_schema(responses=ExportOutput, operation_id="exports_retrieve")
    def get(self, request, export_id):
        export = ExportRequest.objects.filter(pk=export_id).first()
        if export is None:
            raise NotFound(f"No export {export_id}.")
        return Response(ExportOutput(export, context={'tenant': request.tenant}).data)


class ExportDownloadApi(SignedDownloadApi):
    """The export file, for the holder of a signed link (no other credentials)."""

    @query_parameters(DownloadQuery)
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY}, auth=[],
                   operation_id="exports_download")
    def get(self, request, export_id):
        return self.serve(request, export_id)

    def token_valid(self, request, export_id, token):
        return services.download_token_valid(tenant=request.tenant, export_id=export_id, token=token)

    def finished_export(self, request, export_id):
        return ExportRequest.objects.filter(pk=export_id, status=ExportRequest.Status.DONE).first()

    def attachment(self, request, export):
        return {"filename": f"{export.kind}-{export.pk}.{export.format}"}
