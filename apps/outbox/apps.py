from django.apps import AppConfig


class OutboxConfig(AppConfig):
    """Tenant plane: the outbox of tenant data changes, in the tenant's schema,
    so that a side effect is recorded in the same transaction as its change."""

    name = "apps.outbox"
    label = "outbox"
    verbose_name = "Tenant outbox"
