from django.contrib import admin
from django.db.models import Count

from .models import Domain, Shard, Tenant


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "plan", "status", "shard", "writes_frozen", "schema_name", "created_at"]
    list_filter = ["plan", "status", "shard"]
    list_select_related = ["plan", "shard"]
    search_fields = ["slug", "name"]
    # Moving a tenant copies its data; it goes through `manage.py move_tenant`.
    # A plan change has history and cache effects of its own: the billing
    # admin makes the field editable through its service.
    readonly_fields = ["plan", "schema_name", "shard", "writes_frozen", "created_at", "updated_at"]
    inlines = [DomainInline]

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
