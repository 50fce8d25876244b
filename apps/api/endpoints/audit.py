from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from apps.accounts.models import Membership
from apps.api.pagination import PageQuery, TenantCursorPagination, paginated
from apps.api.serializers import InstantField
from apps.api.views import TenantAPIView, query_parameters
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

    class AuditEntryFilter(PageQuery):
        object_type = serializers.CharField(max_length=100, required=False)
        object_id = serializers.CharField(max_length=64, required=False)
        actor_id = serializers.IntegerField(required=False, min_value=1)
        action = serializers.ChoiceField(choices=AuditEntry.Action.choices, required=False)
        since = InstantField(required=False)
        until = InstantField(required=False)

    @query_parameters(AuditEntryFilter)
    @extend_schema(responses=paginated(AuditEntryOutput, "AuditEntryPage"), operation_id="audit_list")
    def get(self, request):
        filters = dict(self.query)
        filters.pop("cursor", None)
        filters.pop("page_size", None)
        paginator = AuditPagination()
        page = paginator.paginate_queryset(audit_entries(**filters), request, view=self)
        return paginator.get_paginated_response(AuditEntryOutput(page, many=True).data)
