import datetime as dt

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.api.serializers import JsonObjectField, StrictSerializer, WindowedDateTimeField, validated
from apps.api.views import TenantAPIView
from apps.partitions.partitions import accepting_window

from . import services


class EventSerializer(StrictSerializer):
    # The service checks both again for every caller; here they make the
    # OpenAPI schema state them (a pattern, and the window of days).
    type = serializers.CharField(max_length=100, validators=[RegexValidator(services.EVENT_TYPE)])
    timestamp = WindowedDateTimeField(
        window=accepting_window, rule="When the event happened: from the start of the previous month to one day from now.")
    properties = JsonObjectField(required=False, default=dict,
                                 help_text=f"At most {services.MAX_PROPERTIES_BYTES} bytes as JSON.")


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
