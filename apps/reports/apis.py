from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.api.errors import NotFound
from apps.api.pagination import TenantCursorPagination, paginated
from apps.api.serializers import StrictSerializer, validated
from apps.api.views import TenantAPIView

from . import services
from .models import ExportRequest


class ExportOutput(serializers.ModelSerializer):
    status_url = serializers.SerializerMethodField()

    class Meta:
        model = ExportRequest
        fields = ["id", "kind", "format", "filters", "status", "rows_done", "rows_total", "error", "created_at",
                  "finished_at", "status_url"]

    def get_status_url(self, export) -> str:
        return f"/api/v1/exports/{export.pk}"


class ExportListCreateApi(TenantAPIView):
    class ExportCreateInput(StrictSerializer):
        kind = serializers.ChoiceField(choices=ExportRequest.Kind.choices)
        format = serializers.ChoiceField(choices=ExportRequest.Format.choices, default=ExportRequest.Format.CSV)
        filters = serializers.DictField(child=serializers.CharField(max_length=100), required=False, default=dict)

    @extend_schema(responses=paginated(ExportOutput, "ExportPage"), operation_id="exports_list")
    def get(self, request):
        paginator = TenantCursorPagination()
        page = paginator.paginate_queryset(ExportRequest.objects.all(), request, view=self)
        return paginator.get_paginated_response(ExportOutput(page, many=True).data)

    @extend_schema(request=ExportCreateInput, responses={202: ExportOutput}, operation_id="exports_create")
    def post(self, request):
        data = validated(self.ExportCreateInput, request.data)
        export = services.export_request(requested_by_id=request.user.pk, **data)
        response = Response(ExportOutput(export).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/exports/{export.pk}"
        return response


class ExportDetailApi(TenantAPIView):
    @extend_schema(responses=ExportOutput, operation_id="exports_retrieve")
    def get(self, request, export_id):
        export = ExportRequest.objects.filter(pk=export_id).first()
        if export is None:
            raise NotFound(f"No export {export_id}.")
        return Response(ExportOutput(export).data)
