from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "apps.backoffice"
    label = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        from django.contrib import admin

        # The operator admin's landing page leads with the operator console
        # (apps/backoffice/console, mounted at /admin/console/).
        admin.site.index_template = "console/admin_index.html"
