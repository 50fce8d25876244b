"""/api/v1/ of a tenant's host."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.api.endpoints import accounts, analytics, audit, billing, content, reports, search, support_access

urlpatterns = [
    path("schema", SpectacularAPIView.as_view(api_version="v1"), name="api-schema"),
    # The split view serves its start-up script as a file: no inline script, so a strict CSP holds.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("auth/token", accounts.TokenApi.as_view(), name="auth-token"),
    path("me", accounts.MeApi.as_view(), name="me"),
    path("support-access", support_access.SupportGrantListApi.as_view(), name="support-access"),
    path("members", accounts.MemberListApi.as_view(), name="members"),
    path("members/<int:membership_id>", accounts.MemberDetailApi.as_view(), name="member"),
    path("invitations", accounts.InvitationListCreateApi.as_view(), name="invitations"),
    path("invitations/accept", accounts.InvitationAcceptApi.as_view(), name="invitation-accept"),
    path("api-keys", accounts.ApiKeyListCreateApi.as_view(), name="api-keys"),
    path("api-keys/<int:api_key_id>", accounts.ApiKeyDetailApi.as_view(), name="api-key"),
    path("documents", content.DocumentListCreateApi.as_view(), name="documents"),
    path("documents/bulk", content.DocumentBulkCreateApi.as_view(), name="documents-bulk"),
    path("documents/<int:document_id>", content.DocumentDetailApi.as_view(), name="document"),
    path("search", search.SearchApi.as_view(), name="search"),
    path("events", analytics.EventIngestApi.as_view(), name="events"),
    path("usage", billing.UsageApi.as_view(), name="usage"),
    path("usage/events", billing.EventUsageApi.as_view(), name="usage-events"),
    path("audit", audit.AuditListApi.as_view(), name="audit"),
    path("exports", reports.ExportListCreateApi.as_view(), name="exports"),
    path("exports/<uuid:export_id>", reports.ExportDetailApi.as_view(), name="export"),
    path("exports/<uuid:export_id>/download", reports.ExportDownloadApi.as_view(), name="export-download"),
]

# A whole tenant's export and its deletion (owners).
from apps.api.endpoints import lifecycle  # noqa: E402

urlpatterns += [
    path("tenant-exports", lifecycle.TenantExportListCreateApi.as_view(), name="tenant-exports"),
    path("tenant-exports/<uuid:export_id>", lifecycle.TenantExportDetailApi.as_view(), name="tenant-export"),
    path("tenant-exports/<uuid:export_id>/download", lifecycle.TenantExportDownloadApi.as_view(),
         name="tenant-export-download"),
    path("offboarding", lifecycle.OffboardingApi.as_view(), name="offboarding"),
]

# Webhooks: endpoints, their deliveries, events of the last 30 days (owners and admins).
from apps.api.endpoints import webhooks  # noqa: E402

urlpatterns += [
    path("webhook-endpoints", webhooks.WebhookEndpointListApi.as_view(), name="webhook-endpoints"),
    path("webhook-endpoints/<int:endpoint_id>", webhooks.WebhookEndpointDetailApi.as_view(), name="webhook-endpoint"),
    path("webhook-endpoints/<int:endpoint_id>/rotate-secret", webhooks.WebhookSecretRotateApi.as_view(),
         name="webhook-endpoint-rotate"),
    path("webhook-endpoints/<int:endpoint_id>/replay", webhooks.WebhookReplayApi.as_view(),
         name="webhook-endpoint-replay"),
    path("webhook-endpoints/<int:endpoint_id>/deliveries", webhooks.WebhookDeliveryListApi.as_view(),
         name="webhook-endpoint-deliveries"),
    path("webhook-events", webhooks.WebhookEventListApi.as_view(), name="webhook-events"),
    path("webhook-events/<str:event_id>", webhooks.WebhookEventDetailApi.as_view(), name="webhook-event"),
    path("webhook-events/<str:event_id>/resend", webhooks.WebhookEventResendApi.as_view(),
         name="webhook-event-resend"),
]
