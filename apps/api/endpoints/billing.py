"""Usage and quotas of the tenant: counters and the analytics read model."""

import datetime as dt

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.analytics.selectors import daily_usage
from apps.api.serializers import StrictSerializer
from apps.api.views import TenantAPIView, query_parameters
from apps.billing.selectors import usage_summary


class UsageApi(TenantAPIView):
    class UsageOutput(serializers.Serializer):
        plan = serializers.CharField()
        rate_limit_per_minute = serializers.IntegerField()
        quotas = serializers.DictField(child=serializers.DictField())

    @extend_schema(responses=UsageOutput, operation_id="usage")
    def get(self, request):
        return Response(usage_summary(tenant=request.tenant))


class EventUsageApi(TenantAPIView):
    class EventUsageFilter(StrictSerializer):
        since = serializers.DateField(required=False, help_text=(
            "First day; default 30 days before until. Not after until, and at most 366 days before it."))
        until = serializers.DateField(required=False, help_text="Last day; default today.")
        type = serializers.CharField(max_length=100, required=False)

        def validate(self, attrs):
            until = attrs.get("until") or timezone.now().date()
            # until may be 0001-01-01: the default must not step below date.min.
            since = attrs.get("since") or max(until, dt.date.min + dt.timedelta(days=30)) - dt.timedelta(days=30)
            if since > until:
                raise serializers.ValidationError({"since": "must not be after until"})
            if (until - since).days > 366:
                raise serializers.ValidationError({"since": "at most 366 days at a time"})
            return {**attrs, "since": since, "until": until}

    class EventUsageRow(serializers.Serializer):
        day = serializers.DateField()
        event_type = serializers.CharField()
        count = serializers.IntegerField()

    @query_parameters(EventUsageFilter)
    @extend_schema(responses=EventUsageRow(many=True), operation_id="usage_events")
    def get(self, request):
        filters = self.query
        rows = daily_usage(since=filters["since"], until=filters["until"], event_type=filters.get("type"))
        return Response(self.EventUsageRow(rows, many=True).data)
