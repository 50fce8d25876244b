from celery import shared_task

from apps.jobs.base import PlatformTask
from apps.tenancy import planes

from .services import idempotency_purge_expired


@shared_task(base=PlatformTask, name="idempotency.purge")
def purge() -> int:
    """Hourly: drop Idempotency-Key records past their 24 hours, on every shard."""
    from django.db import connections

    from apps.tenancy.schemas import tenant_schemas_by_alias

    deleted = 0
    for alias, schemas in tenant_schemas_by_alias(planes.shard_aliases()).items():
        for schema in schemas:
            connections[alias].set_schema(schema)
            try:
                deleted += idempotency_purge_expired(alias=alias)
            finally:
                connections[alias].set_schema_to_public()
    return deleted
