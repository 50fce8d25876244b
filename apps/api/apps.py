from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "apps.api"
    label = "api"
    verbose_name = "API conventions"

    def ready(self) -> None:
        from . import authentication, schema  # noqa: F401  (cache invalidation receivers; OpenAPI auth extensions)
