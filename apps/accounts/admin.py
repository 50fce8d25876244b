from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError

from .models import Membership, SupportGrant, User
from .support import MAX_GRANT_HOURS, support_grant_create, support_grant_revoke, support_grant_validate


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["tenant"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "is_active", "is_staff", "is_superuser", "last_login"]
    search_fields = ["email", "first_name", "last_name"]
    inlines = [MembershipInline]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "tenant__slug"]
    autocomplete_fields = ["user", "tenant"]


class SupportGrantForm(forms.ModelForm):
    hours = forms.FloatField(initial=4, min_value=0.1, max_value=MAX_GRANT_HOURS, help_text="How long access lasts.")

    class Meta:
        model = SupportGrant
        fields = ["tenant", "operator", "reason"]

    def clean(self):
        data = super().clean()
        if not self.errors:
            try:
                support_grant_validate(tenant_id=data["tenant"].pk, operator=data["operator"], reason=data["reason"],
                                       hours=data["hours"])
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, messages)
        return data


@admin.register(SupportGrant)
class SupportGrantAdmin(admin.ModelAdmin):
    """Operators grant themselves or a colleague time-boxed access to one tenant."""

    form = SupportGrantForm
    list_display = ["tenant", "operator", "reason", "created_at", "expires_at", "revoked_at", "active"]
    list_filter = ["revoked_at"]
    search_fields = ["tenant__slug", "operator__email", "reason"]
    actions = ["revoke"]

    @admin.display(boolean=True)
    def active(self, obj) -> bool:
        return obj.is_active

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a grant is not edited: revoke it and grant anew

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # kept as a record of who had access

    def save_model(self, request, obj, form, change):
        grant = support_grant_create(tenant_id=obj.tenant_id, operator=obj.operator, reason=obj.reason,
                                     hours=form.cleaned_data["hours"], granted_by=request.user)
        obj.pk, obj.expires_at, obj.created_at = grant.pk, grant.expires_at, grant.created_at

    @admin.action(description="Revoke the selected grants now")
    def revoke(self, request, queryset):
        for grant in queryset:
            support_grant_revoke(grant=grant)
        self.message_user(request, f"Revoked {queryset.count()} grant(s).")
