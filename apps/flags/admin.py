from django.contrib import admin

from .models import Flag


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    list_display = ["key", "enabled", "everyone", "percentage", "plans", "updated_at"]
    list_editable = ["enabled", "everyone", "percentage"]
    search_fields = ["key", "description"]
    filter_horizontal = ["tenants"]
