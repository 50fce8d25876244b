"""The tenant's view of support access: which operators may act in it, why, until when."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.accounts.models import Membership, SupportGrant
from apps.accounts.support import support_grants_of_tenant
from apps.api.views import TenantAPIView


class SupportGrantOutput(serializers.ModelSerializer):
    operator_email = serializers.EmailField(source="operator.email")
    active = serializers.BooleanField(source="is_active")

    class Meta:
        model = SupportGrant
        fields = ["id", "operator_email", "reason", "created_at", "expires_at", "revoked_at", "active"]


class SupportGrantListApi(TenantAPIView):
    read_role = Membership.Role.ADMIN

    @extend_schema(responses=SupportGrantOutput(many=True), operation_id="support_access_list")
    def get(self, request):
        grants = support_grants_of_tenant(tenant_id=request.tenant.pk)[:100]
        return Response(SupportGrantOutput(grants, many=True).data)
