from django.contrib import admin, messages
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from .models import Domain, Shard, Tenant


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "plan", "status", "shard", "writes_frozen", "schema_name", "created_at", "console"]
    list_filter = ["plan", "status", "shard"]
    list_select_related = ["plan", "shard"]
    search_fields = ["slug", "name"]
    # Moving a tenant copies its data, and suspending or resuming it is an
    # operator action with a reason: both go through the operator console
    # (or `manage.py move_tenant`). A plan change has history and cache
    # effects of its own: the billing admin makes the field editable through
    # its service. The slug names the tenant's schema, host and URLs, so a
    # rename is refused: it is read-only here.
    readonly_fields = ["slug", "plan", "status", "schema_name", "shard", "writes_frozen", "created_at", "updated_at"]
    inlines = [DomainInline]

    def get_queryset(self, request):
        # The platform's own (public) row serves the operators' host and has
        # no data schema: it is not a tenant to edit, suspend or move.
        return super().get_queryset(request).exclude(schema_name="public")

    @admin.display(description="console")
    def console(self, obj) -> str:
        return format_html('<a href="{}">operate</a>', reverse("console:tenant", args=[obj.slug]))

    def save_model(self, request, obj, form, change):
        if change and "slug" in request.POST and request.POST["slug"] != obj.slug:
            messages.warning(request, "A tenant's slug cannot be renamed: it names its schema, host and URLs.")
        super().save_model(request, obj, form, change)

    def has_add_permission(self, request) -> bool:
        # Provisioning creates a schema and an owner; it goes through
        # `manage.py create_tenant` (the provisioning service), not a bare form.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ["domain", "tenant", "is_primary"]
    search_fields = ["domain", "tenant__slug"]
    autocomplete_fields = ["tenant"]


@admin.register(Shard)
class ShardAdmin(admin.ModelAdmin):
    list_display = ["name", "alias", "state", "weight", "tenant_count", "created_at"]
    list_filter = ["state"]
    readonly_fields = ["alias", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(tenant_count=Count("tenants"))

    @admin.display(description="tenants", ordering="tenant_count")
    def tenant_count(self, obj) -> int:
        return obj.tenant_count

    def has_add_permission(self, request) -> bool:
        # Shards come from configuration (SHARD_URLS); `migrate` registers them.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
