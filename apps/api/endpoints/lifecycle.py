"""A whole tenant's export (archive of every table, control-plane rows and
files) and the tenant's deletion, for its owners."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.accounts.models import Membership
from apps.api.downloads import DownloadQuery, SignedDownloadApi
from apps.api.serializers import StrictSerializer, validated
from apps.api.views import TenantAPIView, query_parameters
from apps.http.errors import NotFound
from apps.lifecycle import selectors, services
from apps.lifecycle.models import Offboarding, TenantExport


class TenantExportOutput(serializers.ModelSerializer):
    parts_done = serializers.IntegerField()
    percent = serializers.SerializerMethodField()
    stalled = serializers.SerializerMethodField()
    status_url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = TenantExport
        fields = ["id", "status", "attempts", "stalled", "parts_done", "parts_total", "current_part", "rows_done",
                  "rows_estimate", "bytes_done", "percent", "size_bytes", "manifest_sha256", "error", "created_at",
                  "heartbeat_at", "finished_at", "status_url", "download_url"]

    def get_percent(self, export) -> int | None:
        """Parts written of all parts (the archive's own assembly is the last step)."""
        return selectors.export_percent(export)

    def get_stalled(self, export) -> bool:
        """Running with no progress for a while: its worker probably died (another one goes on from the checkpoint)."""
        return selectors.export_stalled(export)

    def get_status_url(self, export) -> str:
        return f"/api/v1/tenant-exports/{export.pk}"

    def get_download_url(self, export) -> str | None:
        """Signed, valid for TENANT_EXPORT_DOWNLOAD_SECONDS; present once the archive is ready."""
        if export.status != TenantExport.Status.DONE:
            return None
        return services.download_url(self.context["tenant"], export)


class OwnerOnly:
    read_role = Membership.Role.OWNER
    write_role = Membership.Role.OWNER


class TenantExportListCreateApi(OwnerOnly, TenantAPIView):
    rate_scope = {"POST": "exports"}

    @extend_schema(responses=TenantExportOutput(many=True), operation_id="tenant_exports_list")
    def get(self, request):
        exports = services.export_list(tenant=request.tenant)[:50]
        return Response(TenantExportOutput(exports, many=True, context={"tenant": request.tenant}).data)

    @extend_schema(request=None, responses={202: TenantExportOutput}, operation_id="tenant_exports_create")
    def post(self, request):
        export = services.export_request(tenant=request.tenant, requested_by_id=request.user.pk)
        response = Response(TenantExportOutput(export, context={"tenant": request.tenant}).data,
                            status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/tenant-exports/{export.pk}"
        return response


class TenantExportDetailApi(OwnerOnly, TenantAPIView):
    @extend_schema(responses=TenantExportOutput, operation_id="tenant_exports_retrieve")
    def get(self, request, export_id):
        export = services.export_list(tenant=request.tenant).filter(pk=export_id).first()
        if export is None:
            raise NotFound(f"No tenant export {export_id}.")
        return Response(TenantExportOutput(export, context={"tenant": request.tenant}).data)


class TenantExportDownloadApi(SignedDownloadApi):
    """The archive, for the holder of a signed link (no other credentials)."""

    no_file_detail = "This export has no archive."

    @query_parameters(DownloadQuery)
    @extend_schema(responses={(200, "application/x-tar"): OpenApiTypes.BINARY}, auth=[],
                   operation_id="tenant_exports_download")
    def get(self, request, export_id):
        return self.serve(request, export_id)

    def token_valid(self, request, export_id, token):
        return services.download_token_valid(tenant=request.tenant, export_id=export_id, token=token)

    def finished_export(self, request, export_id):
        return services.export_list(tenant=request.tenant).filter(pk=export_id,
                                                                   status=TenantExport.Status.DONE).first()

    def attachment(self, request, export):
        return {"filename": f"{request.tenant.slug}-{export.pk}.tar", "content_type": "application/x-tar"}


class OffboardingInput(StrictSerializer):
    confirm = serializers.CharField(max_length=40, help_text="The tenant's slug, to confirm.")
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class OffboardingOutput(serializers.ModelSerializer):
    class Meta:
        model = Offboarding
        fields = ["id", "status", "tenant_slug", "requested_at", "erase_after", "reason"]


class OffboardingApi(OwnerOnly, TenantAPIView):
    """Delete this tenant: it is suspended at once (its hosts answer 403) and
    erased for good after the grace period; the platform's operators can
    take it back until then."""

    @extend_schema(request=OffboardingInput, responses={202: OffboardingOutput}, operation_id="offboarding_create")
    def post(self, request):
        data = validated(OffboardingInput, request.data)
        if data["confirm"] != request.tenant.slug:
            from rest_framework.exceptions import ValidationError

            raise ValidationError({"confirm": [f"Type the tenant's slug '{request.tenant.slug}' to confirm."]})
        offboarding = services.offboard_request(
            tenant=request.tenant, requested_as="owner", requested_by_id=request.user.pk,
            requested_by=request.user.user.email, reason=data.get("reason", ""))
        return Response(OffboardingOutput(offboarding).data, status=status.HTTP_202_ACCEPTED)
