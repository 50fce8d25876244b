from django.contrib import admin

from apps.tenancy.admin import TenantAdmin
from apps.tenancy.models import Tenant

from .models import Plan, PlanChange
from .services import subscription_change_plan


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "rank", "max_documents", "max_events_per_month", "max_seats", "max_api_keys",
                    "rate_limit_per_minute", "task_concurrency"]

    def get_readonly_fields(self, request, obj=None):
        # Flags and commands name plans by code; a rename would silently
        # untarget them.
        return ["code"] if obj is not None else []


class PlanChangeInline(admin.TabularInline):
    model = PlanChange
    fk_name = "tenant"
    fields = readonly_fields = ["changed_at", "from_plan", "to_plan", "changed_by", "source"]
    extra = 0
    can_delete = False
    verbose_name_plural = "plan history"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# The tenant page of the operator admin, with the plan editable. Registered
# here, over the kernel's TenantAdmin, because changing a plan is billing's
# business: the form's plan goes through subscription_change_plan (history,
# caches refreshed after the control-plane commit), never as a bare write.
admin.site.unregister(Tenant)


@admin.register(Tenant)
class TenantWithPlanAdmin(TenantAdmin):
    inlines = [*TenantAdmin.inlines, PlanChangeInline]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and not obj.is_public:
            readonly.remove("plan")
        return readonly

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "plan" in form.base_fields:
            form.base_fields["plan"].required = True
            form.base_fields["plan"].empty_label = None
        return form

    def save_model(self, request, obj, form, change) -> None:
        if change and "plan" in form.changed_data:
            subscription_change_plan(tenant=obj, plan_code=obj.plan.code, changed_by=request.user, source="admin")
        super().save_model(request, obj, form, change)


@admin.register(PlanChange)
class PlanChangeAdmin(admin.ModelAdmin):
    list_display = ["changed_at", "tenant", "from_plan", "to_plan", "changed_by", "source"]
    list_filter = ["to_plan", "source"]
    list_select_related = ["tenant", "from_plan", "to_plan", "changed_by"]
    search_fields = ["tenant__slug"]

    def has_add_permission(self, request) -> bool:
        return False  # plans change on the tenant page or with `manage.py set_tenant_plan`

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
