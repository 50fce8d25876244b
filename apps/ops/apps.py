from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Health, readiness and metrics endpoints, and the scrape-time readings
    of shared state (queues, dead letters, outbox, shards, moves)."""

    name = "apps.ops"
    label = "ops"
    verbose_name = "Operations endpoints"
