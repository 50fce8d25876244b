from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "apps.observability"
    label = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from django.core.signals import request_started

        from .middleware import clear_request_context

        request_started.connect(clear_request_context, dispatch_uid="observability.clear_request_context")
