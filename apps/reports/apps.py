from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "apps.reports"
    label = "reports"
    verbose_name = "Reports"

    def ready(self) -> None:
        # The export emails carry the export's id only; their links are made
        # by these in the worker that sends them.
        from apps.notifications.emails import register_resolver

        from .emails import export_failed_links, report_ready_links

        register_resolver("report_ready", report_ready_links)
        register_resolver("export_failed", export_failed_links)
