from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "apps.analytics"
    label = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        from django.utils import timezone

        from apps.billing.selectors import usage_meter_register

        from .selectors import events_in_month

        usage_meter_register("events_per_month", lambda tenant: events_in_month(timezone.now().date()))
