from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.jobs.base import PlatformTask, TenantTask
from apps.outbox.tasks import tenant_id_batches

from . import services


@shared_task(base=TenantTask, name="search.index_documents")
def index_documents(document_ids: list[int]) -> int:
    """(Re)index documents of the message's tenant. Idempotent."""
    return services.search_index_documents(document_ids)


# One rebuild per tenant in five minutes, however often it is asked for
# (apps/jobs/uniqueness.py): the arguments do not make another rebuild.
@shared_task(base=TenantTask, name="search.rebuild_index", unique_for=300, unique_key=lambda args, kwargs: "index")
def rebuild_index(batch_size: int = 500, restart: bool = False) -> int:
    return services.search_rebuild(batch_size=batch_size, restart=restart).done


@shared_task(base=PlatformTask, name="search.rebuild_all")
def rebuild_all(batch_size: int = 500) -> int:
    """One rebuild message per tenant, sent in bounded batches."""
    from apps.tenancy.models import Tenant

    sent = 0
    for batch in tenant_id_batches(settings.OUTBOX_SWEEP_BATCH):
        for tenant in Tenant.objects.filter(pk__in=batch):
            rebuild_index.apply_async(kwargs={"batch_size": batch_size},
                                      headers={"tenant_id": tenant.pk, "tenant_slug": tenant.slug})
            sent += 1
    return sent
