from django.apps import AppConfig


class ContentConfig(AppConfig):
    name = "apps.content"
    label = "content"
    verbose_name = "Content"

    def ready(self) -> None:
        from apps.billing.selectors import usage_meter_register

        from .selectors import document_count

        usage_meter_register("documents", lambda tenant: document_count())
