import datetime as dt

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.api.serializers import StrictSerializer, validated
from apps.api.views import TenantAPIView

from . import services


class EventSerializer(StrictSerializer):
    type = serializers.CharField(max_length=100)
    timestamp = serializers.DateTimeField()
    properties = serializers.DictField(required=False, default=dict)


class EventIngestApi(TenantAPIView):
    class EventBatchInput(StrictSerializer):
        events = EventSerializer(many=True, allow_empty=False, max_length=services.MAX_BATCH)

    class EventBatchOutput(serializers.Serializer):
        accepted = serializers.IntegerField()

    @extend_schema(request=EventBatchInput, responses={202: EventBatchOutput}, operation_id="events_ingest")
    def post(self, request):
        data = validated(self.EventBatchInput, request.data)
        events = [
            services.EventInput(type=e["type"], timestamp=e["timestamp"].astimezone(dt.UTC), properties=e["properties"])
            for e in data["events"]
        ]
        accepted = services.events_ingest(events=events)
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)
