"""Operator admin: the record of operator actions (read-only)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import OperatorAction


@admin.register(OperatorAction)
class OperatorActionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_email", "kind", "target", "reason", "outcome", "console_link"]
    list_filter = ["kind", "outcome"]
    search_fields = ["actor_email", "target", "reason"]
    readonly_fields = [f.name for f in OperatorAction._meta.fields]

    @admin.display(description="console")
    def console_link(self, obj) -> str:
        return format_html('<a href="{}">details</a>', reverse("console:action", args=[obj.pk]))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the record of who did what stays


# Tenant admin: documents are edited through the content services.
from .tenant_pages import documents  # noqa: E402,F401
