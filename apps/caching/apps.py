from django.apps import AppConfig


class CachingConfig(AppConfig):
    """Kernel: tenant-scoped, versioned, stampede-protected caching."""

    name = "apps.caching"
    label = "caching"
    verbose_name = "Caching"
