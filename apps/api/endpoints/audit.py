from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from apps.accounts.models import Membership
from apps.api.pagination import TenantCursorPagination, paginated
from apps.api.serializers import StrictSerializer, validated
from apps.api.views import TenantAPIView
from apps.audit.models import AuditEntry
from apps.audit.selectors import audit_entries


class AuditPagination(TenantCursorPagination):
    ordering = "-occurred_at"


class AuditEntryOutput(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", "occurred_at", "actor_type", "actor_id", "api_key_id", "action", "object_type",
                  "object_id", "request_id", "changes"]



class AuditListApi(TenantAPIView):
    read_role = Membership.Role.ADMIN  # owners and admins

    class AuditEntryFilter(StrictSerializer):
        object_type = serializers.CharField(max_length=100, required=False)
        object_id = serializers.CharField(max_length=64, required=False)
        actor_id = serializers.IntegerField(required=False, min_value=1)
        action = serializers.ChoiceField(choices=AuditEntry.Action.choices, required=False)
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)
        cursor = serializers.CharField(required=False, max_length=500)
        page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)

    @extend_schema(
        parameters=[AuditEntryFilter],  # the query parameters as validated, constraints included
        responses=paginated(AuditEntryOutput, "AuditEntryPage"), operation_id="audit_list",
    )
    def get(self, request):
        filters = validated(self.AuditEntryFilter, request.query_params.dict())
        filters.pop("cursor", None)
        filters.pop("page_size", None)
        paginator = AuditPagination()
        page = paginator.paginate_queryset(audit_entries(**filters), request, view=self)
        return paginator.get_paginated_response(AuditEntryOutput(page, many=True).data)
