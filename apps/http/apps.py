from django.apps import AppConfig


class HttpConfig(AppConfig):
    """What every middleware, service and view raises or renders: RFC 9457
    problem details, the domain errors mapped to them, and the security
    headers of browser pages. Tier 1: imports only the observability core."""

    name = "apps.http"
    label = "http"
    verbose_name = "HTTP conventions"
