"""The two admin sites.

* Operators use Django's default ``admin.site`` on the platform host
  (PLATFORM_DOMAIN): tenants, domains, users, memberships. Staff only.
* A tenant's owners and admins use ``tenant_admin_site`` on the tenant's own
  host. It shows tenant models only; the schema the tenant middleware
  activated is the only data it can reach. Access is decided by membership in
  *this* tenant, not by global staff flags, so a session from another tenant's
  host opens nothing here.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm

from apps.accounts.selectors import user_can_administer_tenant


def _request_tenant_id(request) -> int | None:
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.is_public:
        return None
    return tenant.pk


class TenantAdminAuthenticationForm(AdminAuthenticationForm):
    def confirm_login_allowed(self, user) -> None:
        tenant_id = _request_tenant_id(self.request)
        if tenant_id is None or not user_can_administer_tenant(user=user, tenant_id=tenant_id):
            raise forms.ValidationError(
                "This account is not an owner or admin of this tenant.", code="not_tenant_admin"
            )


class TenantAdminSite(admin.AdminSite):
    site_header = "Tenant administration"
    site_title = "Tenant admin"
    index_title = "Your organisation's data"
    login_form = TenantAdminAuthenticationForm
    index_template = "tenant_admin/index.html"

    def has_permission(self, request) -> bool:
        tenant_id = _request_tenant_id(request)
        return tenant_id is not None and user_can_administer_tenant(user=request.user, tenant_id=tenant_id)

    def each_context(self, request):
        context = super().each_context(request)
        tenant = getattr(request, "tenant", None)
        if tenant is not None:
            context["site_header"] = f"{tenant.name} administration"
        return context

    def get_urls(self):
        """The organisation's pages (members, keys, audit log, exports,
        usage) before the admin's own: ``admin_view`` puts each behind
        ``has_permission`` (an owner or admin of the host's tenant), CSRF
        and no-cache."""
        from functools import partial

        from django.urls import path

        from .tenant_pages import api_keys, audit, exports, jobs, lifecycle, members, usage

        def page(view, route: str, name: str):
            return path(route, self.admin_view(partial(view, site=self)), name=name)

        return [
            page(members.members_page, "members/", "tenant-members"),
            page(members.member_role, "members/<int:membership_id>/role/", "tenant-member-role"),
            page(members.member_remove, "members/<int:membership_id>/remove/", "tenant-member-remove"),
            page(members.invite, "invitations/", "tenant-invite"),
            page(members.invitation_revoke, "invitations/<int:invitation_id>/revoke/", "tenant-invitation-revoke"),
            page(api_keys.api_keys_page, "api-keys/", "tenant-api-keys"),
            page(api_keys.api_key_create, "api-keys/create/", "tenant-api-key-create"),
            page(api_keys.api_key_revoke, "api-keys/<int:api_key_id>/revoke/", "tenant-api-key-revoke"),
            page(audit.audit_page, "audit-log/", "tenant-audit"),
            page(exports.exports_page, "exports/", "tenant-exports"),
            page(exports.export_create, "exports/create/", "tenant-export-create"),
            page(usage.usage_page, "usage/", "tenant-usage"),
            page(jobs.failed_jobs_page, "failed-jobs/", "tenant-failed-jobs"),
            page(jobs.failed_job_retry, "failed-jobs/<str:task_id>/retry/", "tenant-failed-job-retry"),
            *self._webhook_urls(page),
            page(lifecycle.lifecycle_page, "data/", "tenant-lifecycle"),
            page(lifecycle.tenant_export_create, "data/archive/", "tenant-export-whole"),
            page(lifecycle.offboard, "data/delete/", "tenant-offboard"),
            *super().get_urls(),
        ]


    @staticmethod
    def _webhook_urls(page):
        from .tenant_pages import webhooks as hooks

        return [
            page(hooks.webhooks_page, "webhooks/", "tenant-webhooks"),
            page(hooks.webhook_create, "webhooks/create/", "tenant-webhook-create"),
            page(hooks.webhook_toggle, "webhooks/<int:endpoint_id>/toggle/", "tenant-webhook-toggle"),
            page(hooks.webhook_rotate, "webhooks/<int:endpoint_id>/rotate/", "tenant-webhook-rotate"),
            page(hooks.webhook_delete, "webhooks/<int:endpoint_id>/delete/", "tenant-webhook-delete"),
            page(hooks.webhook_replay, "webhooks/<int:endpoint_id>/replay/", "tenant-webhook-replay"),
            page(hooks.webhook_events_page, "webhooks/events/", "tenant-webhook-events"),
            page(hooks.webhook_event_page, "webhooks/events/<str:event_id>/", "tenant-webhook-event"),
            page(hooks.webhook_event_resend, "webhooks/events/<str:event_id>/resend/", "tenant-webhook-event-resend"),
        ]


tenant_admin_site = TenantAdminSite(name="tenant_admin")


class TenantModelAdmin(admin.ModelAdmin):
    """ModelAdmin for tenant models: rights follow the site's membership check.

    Global Django permissions describe the control plane; inside a tenant,
    owners and admins manage everything of that tenant.
    """

    def has_module_permission(self, request) -> bool:
        return self.admin_site.has_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request) -> bool:
        return self.admin_site.has_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self.admin_site.has_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.admin_site.has_permission(request)

    # Django's LogEntry lives in the control plane and is keyed by user only;
    # writing tenant object names there would let them surface on another
    # tenant's admin. Tenant changes are recorded inside the tenant instead.
    def log_addition(self, request, obj, message):
        return None

    def log_change(self, request, obj, message):
        return None

    def log_deletion(self, request, obj, object_repr):
        return None

    def log_deletions(self, request, queryset):
        return None


admin.site.site_header = "Platform operations"
admin.site.site_title = "Platform operations"
