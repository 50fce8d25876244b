from django.contrib import admin

from .models import Domain, Tenant


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "plan", "status", "schema_name", "created_at"]
    list_filter = ["plan", "status"]
    search_fields = ["slug", "name"]
    readonly_fields = ["schema_name", "created_at", "updated_at"]
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
