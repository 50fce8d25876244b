"""Whole-tenant exports (exports queue) and the erasure of offboarded tenants (beat)."""

from __future__ import annotations

from celery import shared_task

from apps.jobs.base import PlatformTask


class TenantExportTask(PlatformTask):
    abstract = True
    # Not tenant-scoped: the export reads the schema by name on its shard and
    # runs for a suspended (offboarded) tenant too.
    tenant_scoped = False

    def gave_up(self, exc, args, kwargs) -> None:
        from .exporting import export_fail

        export_id = args[0] if args else (kwargs or {}).get("export_id")
        export_fail(export_id=export_id, error=f"{type(exc).__name__}: {exc}")


@shared_task(base=TenantExportTask, name="lifecycle.export_tenant")
def export_tenant(export_id: str) -> str:
    """Produce a tenant's archive, or go on with one a dead worker left."""
    from .exporting import export_run

    export = export_run(export_id)
    return export.file_name if export is not None else "no such export"


@shared_task(base=PlatformTask, name="lifecycle.erase_due", ignore_result=True)
def erase_due() -> int:
    """Erase every offboarded tenant whose grace period is over."""
    from .erasure import erase_due_tenants

    return len(erase_due_tenants())
