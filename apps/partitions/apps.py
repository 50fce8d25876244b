from django.apps import AppConfig


class PartitionsConfig(AppConfig):
    """Kernel: monthly range partitions of the append-heavy tenant tables."""

    name = "apps.partitions"
    label = "partitions"
    verbose_name = "Partitions"
