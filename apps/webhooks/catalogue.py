"""The event catalogue: every event type a tenant can receive, its version
and the schema of its payload.

The serializers here only describe payloads (the OpenAPI document's
``webhooks`` section, docs/webhooks.md); the payloads themselves are built
by the domain services that announce the changes. A payload changes
compatibly (new fields) within a version; anything else is a new version.
"""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.utils import OpenApiResponse, OpenApiWebhook, extend_schema, extend_schema_field
from rest_framework import serializers


@dataclass(frozen=True)
class EventType:
    name: str
    version: int
    object_type: str
    plane: str  # "tenant": written in the tenant's shard transaction; "control": in the control plane's
    summary: str


CATALOGUE: dict[str, EventType] = {e.name: e for e in [
    EventType("document.created", 1, "document", "tenant", "A document was created."),
    EventType("document.updated", 1, "document", "tenant", "A document's title, body, tags or status changed."),
    EventType("document.deleted", 1, "document", "tenant", "A document was deleted."),
    EventType("member.added", 1, "member", "control", "A person joined the organisation."),
    EventType("member.removed", 1, "member", "control", "A person was removed from the organisation."),
    EventType("export.completed", 1, "export", "tenant", "An export finished; its file can be downloaded."),
    EventType("export.failed", 1, "export", "tenant", "An export gave up."),
    EventType("usage.quota_warning", 1, "quota", "tenant", "Usage of a quota crossed its warning level."),
    EventType("tenant.plan_changed", 1, "tenant", "control", "The organisation moved to another plan."),
]}
EVENT_TYPES = sorted(CATALOGUE)
ALL = "*"


# --- payloads -----------------------------------------------------------------


class WebhookDocumentData(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField()
    author_id = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField(help_text="The document's version after the change (its API ETag).")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class WebhookDocumentUpdatedData(WebhookDocumentData):
    changed = serializers.ListField(child=serializers.CharField(), help_text="Fields whose value changed.")


class WebhookDocumentDeletedData(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField(help_text="The version that was deleted.")


class WebhookMemberData(serializers.Serializer):
    membership_id = serializers.IntegerField()
    user_id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.CharField()


class WebhookExportCompletedData(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    format = serializers.CharField()
    rows = serializers.IntegerField()


class WebhookExportFailedData(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    format = serializers.CharField()
    error = serializers.CharField()


class WebhookQuotaWarningData(serializers.Serializer):
    quota = serializers.CharField()
    used = serializers.IntegerField()
    limit = serializers.IntegerField()
    percent = serializers.IntegerField()
    plan = serializers.CharField()


class WebhookPlanChangedData(serializers.Serializer):
    from_plan = serializers.CharField(allow_null=True)
    to_plan = serializers.CharField()


DATA = {
    "document.created": WebhookDocumentData, "document.updated": WebhookDocumentUpdatedData,
    "document.deleted": WebhookDocumentDeletedData, "member.added": WebhookMemberData, "member.removed": WebhookMemberData,
    "export.completed": WebhookExportCompletedData, "export.failed": WebhookExportFailedData,
    "usage.quota_warning": WebhookQuotaWarningData, "tenant.plan_changed": WebhookPlanChangedData,
}


class WebhookEventObject(serializers.Serializer):
    type = serializers.CharField()
    id = serializers.CharField()
    sequence = serializers.IntegerField(
        help_text="Grows with every change of this object: ignore an event whose sequence is lower than one "
                  "already handled for the same object.")


def _constant(value, **kwargs) -> serializers.Field:
    """A field that always holds ``value`` (an enum of one, with no shared enum component)."""
    schema = {"type": "integer" if isinstance(value, int) else "string", "enum": [value]}
    base = serializers.IntegerField if isinstance(value, int) else serializers.CharField
    return extend_schema_field(schema)(type("Constant", (base,), {"__module__": __name__}))(**kwargs)


def _envelope(event: EventType):
    """The body of one event type: the common envelope around its data."""
    words = "".join(part.title() for part in event.name.replace("_", ".").split("."))
    return type(f"{words}Webhook", (serializers.Serializer,), {
        "__module__": __name__,
        "__doc__": event.summary,
        "id": serializers.CharField(help_text="The event's id; also the webhook-id header. Same on every retry."),
        "type": _constant(event.name),
        "version": _constant(event.version, help_text="The payload's schema version."),
        "timestamp": serializers.DateTimeField(help_text="When the change happened."),
        "tenant": serializers.CharField(help_text="The organisation's slug."),
        "object": WebhookEventObject(),
        "data": DATA[event.name](allow_null=True, help_text="Null when the body would exceed the size bound: "
                                                              "fetch data_url with an API key instead."),
        "data_url": serializers.URLField(required=False, help_text="Present when data is null."),
    })


def _webhook(event: EventType) -> OpenApiWebhook:
    return OpenApiWebhook(name=event.name, decorator=extend_schema(
        summary=event.summary,
        description=("Sent as a POST with the Standard Webhooks headers webhook-id, webhook-timestamp and "
                     "webhook-signature (v1, HMAC-SHA256 of `id.timestamp.body` with the endpoint's secret; "
                     "several signatures, space-separated, while a secret rotates). Answer 2xx within "
                     "10 seconds; anything else is retried with backoff for 3 days."),
        request=_envelope(event),
        responses={200: OpenApiResponse(description="Received.")},
    ))


# What SPECTACULAR_SETTINGS["WEBHOOKS"] names (config/settings/api.py), one per type.
OPENAPI_WEBHOOKS = [_webhook(CATALOGUE[name]) for name in EVENT_TYPES]
