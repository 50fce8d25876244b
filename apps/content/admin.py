from apps.backoffice.sites import TenantModelAdmin, tenant_admin_site

from .models import Document


class DocumentAdmin(TenantModelAdmin):
    list_display = ["title", "version", "created_at", "updated_at"]
    search_fields = ["title", "body"]
    readonly_fields = ["version", "author_id", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change) -> None:
        if change:
            obj.version += 1
        elif obj.author_id is None:
            obj.author_id = request.user.pk
        super().save_model(request, obj, form, change)


tenant_admin_site.register(Document, DocumentAdmin)
