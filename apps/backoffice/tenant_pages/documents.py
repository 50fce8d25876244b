"""Documents in the tenant admin: the same services as the API (quotas,
versioning, audit and search apply)."""

from django import forms

from apps.backoffice.sites import TenantModelAdmin, tenant_admin_site
from apps.billing.services import quota_enforce
from apps.content import selectors, services
from apps.content.models import Document
from apps.http.errors import DomainError
from apps.tenancy.context import require_active_tenant


class DocumentForm(forms.ModelForm):
    class Meta:
        model = Document
        fields = ["title", "body", "tags", "status"]

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None:
            try:  # the same quota as the API, shown on the form instead of a server error
                quota_enforce(tenant=require_active_tenant(), quota="documents", used=selectors.document_count())
            except DomainError as exc:
                raise forms.ValidationError(exc.detail) from exc
        return cleaned


class DocumentAdmin(TenantModelAdmin):
    form = DocumentForm
    list_display = ["title", "status", "version", "created_at", "updated_at"]
    list_filter = ["status"]
    search_fields = ["title", "body"]
    readonly_fields = ["version", "author_id", "created_at", "updated_at"]
    fields = ["title", "body", "tags", "status", "version", "author_id", "created_at", "updated_at"]

    # Same services as the API: quotas, versioning, audit and search apply.
    def save_model(self, request, obj, form, change) -> None:
        values = {name: form.cleaned_data[name] for name in ("title", "body", "tags", "status") if name in form.cleaned_data}
        if change:
            saved = services.document_update(document_id=obj.pk, expected_version=None, changes=values)
        else:
            saved = services.document_create(author_id=request.user.pk, **values)
        obj.pk, obj.version = saved.pk, saved.version

    def delete_model(self, request, obj) -> None:
        services.document_delete(document_id=obj.pk, expected_version=None)

    def delete_queryset(self, request, queryset) -> None:
        for document in queryset:
            services.document_delete(document_id=document.pk, expected_version=None)


tenant_admin_site.register(Document, DocumentAdmin)
