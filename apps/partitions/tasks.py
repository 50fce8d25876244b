from celery import shared_task
from django.conf import settings

from apps.tenancy import planes

from .maintenance import maintain_all


@shared_task(name="partitions.maintain")
def maintain_partitions() -> dict:
    """Daily: partitions ahead and retention, for every tenant on every shard."""
    result = maintain_all(
        planes.shard_aliases(),
        months_ahead=settings.PARTITION_MONTHS_AHEAD,
        retention_months=settings.PARTITION_RETENTION_MONTHS or None,
    )
    return {"schemas": result.schemas, "created": result.created, "dropped": result.dropped,
            "defaults_created": result.defaults_created, "moved_rows": result.moved_rows,
            "default_rows": result.default_rows, "failed": len(result.failed)}
