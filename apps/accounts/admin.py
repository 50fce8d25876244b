from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.core.exceptions import ValidationError

from .models import Membership, SupportGrant, User
from .passwords import password_set_by_operator
from .services import membership_add, membership_change_role, membership_remove
from .support import MAX_GRANT_HOURS, support_grant_create, support_grant_revoke, support_grant_validate


class MembershipInline(admin.TabularInline):
    """Read-only here: roles change in the Membership admin, through the
    services that keep every tenant's last owner."""

    model = Membership
    extra = 0
    fields = readonly_fields = ["tenant", "role", "created_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class AuditedPasswordChangeForm(AdminPasswordChangeForm):
    """An operator setting someone's password acts inside that person's
    tenants: the service records it in each tenant's audit log."""

    def save(self, commit=True):
        usable = self.cleaned_data.get("set_usable_password", True)
        password_set_by_operator(user=self.user, password=self.cleaned_data["password1"] if usable else None)
        return self.user


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    change_password_form = AuditedPasswordChangeForm
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


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "tenant", "role"]

    def clean(self):
        data = super().clean()
        if self.instance.pk and self.instance.role == Membership.Role.OWNER and data.get("role") != Membership.Role.OWNER \
                and _is_last_owner(self.instance):
            self.add_error("role", "A tenant keeps at least one owner.")
        return data


def _is_last_owner(membership: Membership) -> bool:
    return not Membership.objects.filter(tenant_id=membership.tenant_id, role=Membership.Role.OWNER) \
        .exclude(pk=membership.pk).exists()


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Operators act with an owner's authority, through the same services
    (and the same last-owner rule) as the API; the services record each
    change in the tenant's audit log, with the operator as the actor."""

    form = MembershipForm
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "tenant__slug"]
    autocomplete_fields = ["user", "tenant"]

    def get_readonly_fields(self, request, obj=None):
        return ["user", "tenant"] if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            current = Membership.objects.get(pk=obj.pk)
            membership_change_role(membership=current, role=obj.role, acting_role=Membership.Role.OWNER)
        else:
            saved = membership_add(user=obj.user, tenant_id=obj.tenant_id, role=obj.role)
            obj.pk = saved.pk

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not (
            obj is not None and obj.role == Membership.Role.OWNER and _is_last_owner(obj))

    def delete_model(self, request, obj):
        membership_remove(membership=obj, acting_role=Membership.Role.OWNER)

    def delete_queryset(self, request, queryset):
        kept = 0
        for membership in queryset:
            try:
                membership_remove(membership=membership, acting_role=Membership.Role.OWNER)
            except ValidationError:
                kept += 1
        if kept:
            self.message_user(request, f"Kept {kept} membership(s): a tenant keeps at least one owner.",
                              level=messages.WARNING)


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
