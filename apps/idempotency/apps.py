from django.apps import AppConfig


class IdempotencyConfig(AppConfig):
    """Tenant plane: stored responses of POSTs made with an Idempotency-Key.

    In the tenant's schema so that the record commits in the same transaction
    as the change it protects."""

    name = "apps.idempotency"
    label = "idempotency"
    verbose_name = "Idempotency keys"
