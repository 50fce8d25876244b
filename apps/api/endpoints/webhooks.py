"""Webhook endpoints, events and deliveries of the host's tenant (owners and admins)."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.accounts.models import Membership
from apps.api.pagination import PageQuery, TenantCursorPagination, paginated
from apps.api.serializers import InstantField, StrictSerializer, validated
from apps.api.views import TenantAPIView, query_parameters
from apps.http.errors import NotFound
from apps.webhooks import selectors, services
from apps.webhooks.catalogue import ALL, EVENT_TYPES
from apps.webhooks.destinations import url_pattern
from apps.webhooks.models import Delivery, Endpoint

# --- representations ---------------------------------------------------------------


class WebhookEndpointOutput(serializers.ModelSerializer):
    secret_rotation_ends_at = serializers.SerializerMethodField(
        help_text="While set, the previous secret signs too (until this time).")

    class Meta:
        model = Endpoint
        fields = ["id", "url", "description", "event_types", "enabled", "disabled_reason", "disabled_at",
                  "failing_since", "secret_rotation_ends_at", "created_at", "updated_at"]

    def get_secret_rotation_ends_at(self, endpoint: Endpoint) -> str | None:
        ends = endpoint.previous_secret_expires_at
        return serializers.DateTimeField().to_representation(ends) if ends and ends > timezone.now() else None


class WebhookEndpointWithSecret(WebhookEndpointOutput):
    secret = serializers.CharField(read_only=True, help_text="Shown once: store it now. Only a hash is kept.")

    class Meta(WebhookEndpointOutput.Meta):
        fields = WebhookEndpointOutput.Meta.fields + ["secret"]


class WebhookAttemptOutput(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField(help_text="Latency of the attempt.")
    status_code = serializers.IntegerField(allow_null=True)
    succeeded = serializers.BooleanField()
    error = serializers.CharField()
    response_excerpt = serializers.CharField(help_text="The first bytes of the answer.")


class WebhookDeliveryOutput(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = ["id", "endpoint_id", "state", "attempts", "last_status", "last_error", "next_attempt_at",
                  "first_attempt_at", "delivered_at"]


class WebhookDeliveryWithAttempts(WebhookDeliveryOutput):
    attempt_list = WebhookAttemptOutput(source="attempt_set", many=True, read_only=True)

    class Meta(WebhookDeliveryOutput.Meta):
        fields = WebhookDeliveryOutput.Meta.fields + ["attempt_list"]


class WebhookDeliveryOfEndpoint(WebhookDeliveryOutput):
    event_id = serializers.CharField(source="event.public_id")
    event_type = serializers.CharField(source="event.type")

    class Meta(WebhookDeliveryOutput.Meta):
        fields = WebhookDeliveryOutput.Meta.fields + ["event_id", "event_type", "created_at"]


class WebhookObject(serializers.Serializer):
    type = serializers.CharField(source="object_type")
    id = serializers.CharField(source="object_id")
    sequence = serializers.IntegerField()


class WebhookEventOutput(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    type = serializers.CharField()
    version = serializers.IntegerField(source="schema_version")
    object = WebhookObject(source="*")
    created_at = serializers.DateTimeField()
    state = serializers.SerializerMethodField(help_text="none, pending, failed or delivered, over its deliveries.")
    deliveries = WebhookDeliveryOutput(many=True, read_only=True)

    def get_state(self, event) -> str:
        return selectors.event_state(event)


class WebhookEventDetail(WebhookEventOutput):
    data = serializers.JSONField(help_text="The payload as sent (its schema: the OpenAPI document's webhooks).")
    deliveries = WebhookDeliveryWithAttempts(many=True, read_only=True)


class WebhookEventPagination(TenantCursorPagination):
    ordering = "-created_at"


class WebhookRequeued(serializers.Serializer):
    requeued = serializers.IntegerField(help_text="Deliveries queued again.")


# --- endpoints ----------------------------------------------------------------------


def _endpoint(endpoint_id: int) -> Endpoint:
    endpoint = selectors.endpoint_by_id(endpoint_id)
    if endpoint is None:
        raise NotFound(f"No webhook endpoint {endpoint_id} in this tenant.")
    return endpoint


EVENT_TYPE_CHOICES = [ALL, *EVENT_TYPES]


URL_RULE = ("https://, a host name in lower case (never an address literal), an optional port, path and query. "
            "What the name resolves to is checked before every delivery: public addresses only.")


def url_field(**kwargs) -> serializers.CharField:
    return serializers.CharField(max_length=2000, validators=[RegexValidator(url_pattern(), "Not a URL a webhook "
                                                                             "may be sent to.")],
                                 help_text=URL_RULE, **kwargs)


class WebhookEndpointInput(StrictSerializer):
    url = url_field()
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES), allow_empty=False,
                                        max_length=len(EVENT_TYPE_CHOICES), help_text='"*" for every type.')
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class JsonBooleanField(serializers.BooleanField):
    """true or false only, as the schema says (DRF would also take 0, 1, "yes", ...)."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class WebhookEndpointPatch(StrictSerializer):
    url = url_field(required=False)
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES), allow_empty=False,
                                        max_length=len(EVENT_TYPE_CHOICES), required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    enabled = JsonBooleanField(required=False)


class WebhookAdminView(TenantAPIView):
    read_role = Membership.Role.ADMIN
    write_role = Membership.Role.ADMIN


class WebhookEndpointListApi(WebhookAdminView):
    @extend_schema(responses=WebhookEndpointOutput(many=True), operation_id="webhook_endpoints_list")
    def get(self, request):
        return Response(WebhookEndpointOutput(selectors.endpoints(), many=True).data)

    @extend_schema(request=WebhookEndpointInput, responses={201: WebhookEndpointWithSecret},
                   operation_id="webhook_endpoints_create")
    def post(self, request):
        data = validated(WebhookEndpointInput, request.data)
        made = services.endpoint_create(url=data["url"], event_types=data["event_types"],
                                        description=data["description"], created_by_id=request.user.pk)
        body = WebhookEndpointOutput(made.endpoint).data
        body["secret"] = made.secret  # shown once
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Location"] = f"/api/v1/webhook-endpoints/{made.endpoint.pk}"
        return response


class WebhookEndpointDetailApi(WebhookAdminView):
    @extend_schema(responses=WebhookEndpointOutput, operation_id="webhook_endpoints_retrieve")
    def get(self, request, endpoint_id: int):
        return Response(WebhookEndpointOutput(_endpoint(endpoint_id)).data)

    @extend_schema(request=WebhookEndpointPatch, responses=WebhookEndpointOutput,
                   operation_id="webhook_endpoints_update")
    def patch(self, request, endpoint_id: int):
        changes = validated(WebhookEndpointPatch, request.data)
        endpoint = services.endpoint_update(endpoint=_endpoint(endpoint_id), changes=changes)
        return Response(WebhookEndpointOutput(endpoint).data)

    @extend_schema(responses={204: None}, operation_id="webhook_endpoints_destroy")
    def delete(self, request, endpoint_id: int):
        services.endpoint_delete(endpoint=_endpoint(endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookSecretRotateApi(WebhookAdminView):
    class WebhookRotateInput(StrictSerializer):
        overlap_seconds = serializers.IntegerField(
            required=False, min_value=0, max_value=7 * 24 * 3600,
            help_text="How long the previous secret keeps signing (default 24 hours).")

    @extend_schema(request=WebhookRotateInput, responses=WebhookEndpointWithSecret,
                   operation_id="webhook_endpoints_rotate_secret")
    def post(self, request, endpoint_id: int):
        data = validated(self.WebhookRotateInput, request.data)
        made = services.endpoint_rotate_secret(endpoint=_endpoint(endpoint_id),
                                               overlap_seconds=data.get("overlap_seconds"))
        body = WebhookEndpointOutput(made.endpoint).data
        body["secret"] = made.secret  # shown once
        return Response(body)


class WebhookReplayApi(WebhookAdminView):
    class WebhookReplayInput(StrictSerializer):
        since = InstantField(help_text="Deliveries that failed for good, of events made since then.")

    @extend_schema(request=WebhookReplayInput, responses={202: WebhookRequeued},
                   operation_id="webhook_endpoints_replay")
    def post(self, request, endpoint_id: int):
        data = validated(self.WebhookReplayInput, request.data)
        count = services.endpoint_replay(endpoint=_endpoint(endpoint_id), since=data["since"])
        return Response({"requeued": count}, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryListApi(WebhookAdminView):
    class WebhookDeliveryFilter(PageQuery):
        state = serializers.ChoiceField(choices=Delivery.State.choices, required=False)

    @query_parameters(WebhookDeliveryFilter)
    @extend_schema(responses=paginated(WebhookDeliveryOfEndpoint, "WebhookDeliveryPage"),
                   operation_id="webhook_endpoints_deliveries")
    def get(self, request, endpoint_id: int):
        rows = selectors.deliveries_of(_endpoint(endpoint_id), state=self.query.get("state"))
        paginator = WebhookEventPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(WebhookDeliveryOfEndpoint(page, many=True).data)


# --- events ------------------------------------------------------------------------


def _event(event_id: str):
    event = selectors.event_by_public_id(event_id)
    if event is None:
        raise NotFound(f"No webhook event {event_id[:60]} in this tenant (events are kept 30 days).")
    return event


class WebhookEventListApi(WebhookAdminView):
    class WebhookEventFilter(PageQuery):
        type = serializers.ChoiceField(choices=EVENT_TYPES, required=False)
        state = serializers.ChoiceField(choices=Delivery.State.choices, required=False,
                                        help_text="Events with a delivery in this state.")
        endpoint_id = serializers.IntegerField(required=False, min_value=1)

    @query_parameters(WebhookEventFilter)
    @extend_schema(responses=paginated(WebhookEventOutput, "WebhookEventPage"), operation_id="webhook_events_list")
    def get(self, request):
        rows = selectors.events(event_type=self.query.get("type"), state=self.query.get("state"),
                                endpoint_id=self.query.get("endpoint_id"))
        paginator = WebhookEventPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(WebhookEventOutput(page, many=True).data)


class WebhookEventDetailApi(WebhookAdminView):
    @extend_schema(responses=WebhookEventDetail, operation_id="webhook_events_retrieve")
    def get(self, request, event_id: str):
        return Response(WebhookEventDetail(_event(event_id)).data)


class WebhookEventResendApi(WebhookAdminView):
    class WebhookResendInput(StrictSerializer):
        endpoint_id = serializers.IntegerField(required=False, min_value=1,
                                               help_text="Only to this endpoint (default: every endpoint it went to).")

    @extend_schema(request=WebhookResendInput, responses={202: WebhookRequeued}, operation_id="webhook_events_resend")
    def post(self, request, event_id: str):
        data = validated(self.WebhookResendInput, request.data)
        event = _event(event_id)
        endpoint = _endpoint(data["endpoint_id"]) if data.get("endpoint_id") else None
        count = services.event_resend(event=event, endpoint=endpoint)
        return Response({"requeued": count}, status=status.HTTP_202_ACCEPTED)
