from django.contrib import admin

from .models import Plan, Subscription


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "rank", "max_documents", "max_events_per_month", "max_seats", "max_api_keys",
                    "rate_limit_per_minute"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["tenant", "plan", "started_at", "changed_at"]
    list_filter = ["plan"]
    autocomplete_fields = ["tenant"]
