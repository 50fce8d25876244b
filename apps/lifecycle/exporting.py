"""A whole tenant as one archive, written part by part with a checkpoint.

Each table of the tenant's schema (found in the catalog), each control-plane
part and the tenant's files become one part in a work directory; a finished
part's rows, bytes and SHA-256 are recorded on the export row before the
next begins. A worker killed mid-way loses at most the part it was writing:
the next attempt keeps the recorded parts whose files are intact and goes
on. The archive (a tar: manifest.json first, then the parts and files) is
assembled from the parts at the end and stored under MEDIA.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from apps.tenancy.models import Tenant

from . import archive, catalog, control
from .models import TenantExport

MIGRATIONS_KEY = "_migrations"


def archive_name(export: TenantExport) -> str:
    return f"tenant-exports/{export.tenant_id}/{export.pk}.tar"


def tenant_files_root(tenant: Tenant) -> str:
    """Where the tenant's export files live under MEDIA (apps/reports/tasks.py names them so)."""
    return f"exports/{tenant.slug}"


def tenant_work_dir(tenant_id: int) -> Path:
    return Path(settings.TENANT_EXPORT_WORK_DIR) / str(tenant_id)


def work_dir(export: TenantExport) -> Path:
    # Under the tenant's id, so that an erasure finds the parts of every
    # export of the tenant, even one whose row is already gone.
    return tenant_work_dir(export.tenant_id) / str(export.pk)


class Progress:
    """Records a running export's progress at most every TENANT_EXPORT_HEARTBEAT_SECONDS."""

    def __init__(self, export: TenantExport):
        self.export = export
        self.last = 0.0

    def __call__(self, *, part: str, rows: int, size: int, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < settings.TENANT_EXPORT_HEARTBEAT_SECONDS:
            return
        self.last = time.monotonic()
        TenantExport.objects.filter(pk=self.export.pk).update(
            current_part=part[:200], rows_done=rows, bytes_done=size, heartbeat_at=timezone.now())


def _table_part(alias: str, schema: str, table: str, path: Path, tick=None) -> dict:
    written = archive.dump_table(alias, schema, table, path, tick)
    return {**written.as_dict(), "key": catalog.key_columns(alias, schema, table),
            "partitions": catalog.partitions(alias, schema, table)}


def _control_part(rows: Callable, tenant: Tenant, path: Path, tick=None) -> dict:
    return archive.write_json_lines(rows(tenant), path).as_dict()


def _files_part(tenant: Tenant, path: Path, tick=None) -> dict:
    """The tenant's files: each one's checksum and size (read once here,
    once more into the archive). Listed in the part file, one per line."""
    root = tenant_files_root(tenant)
    files = {}
    try:
        _, names = default_storage.listdir(root)
    except FileNotFoundError:
        names = []
    for name in sorted(names):
        with default_storage.open(f"{root}/{name}", "rb") as handle:
            written = archive.hash_stream(handle)
        files[f"exports/{name}"] = {"sha256": written.sha256, "bytes": written.bytes}
    lines = [{"path": rel, **meta} for rel, meta in files.items()]
    return {**archive.write_json_lines(lines, path).as_dict(), "files": files}


def parts_of(tenant: Tenant) -> list[tuple[str, Callable[..., dict]]]:
    """(name in the archive, writer(path, tick)) of every part, in order."""
    alias, schema = tenant.shard.alias, tenant.schema_name
    parts = [(f"tables/{table}.jsonl", partial(_table_part, alias, schema, table))
             for table in catalog.tables(alias, schema)]
    parts += [(f"control/{name}.jsonl", partial(_control_part, rows, tenant))
              for name, rows in control.exporters().items()]
    parts.append(("files.jsonl", partial(_files_part, tenant)))
    return parts


def _checkpoint(export: TenantExport, name: str, meta: dict) -> None:
    """Record one finished part, merged into the row's map in one statement."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"UPDATE {TenantExport._meta.db_table} SET tables = tables || %s::jsonb, heartbeat_at = now() "
            "WHERE id = %s", [json.dumps({name: meta}), export.pk])
    export.tables[name] = meta


def _intact(directory: Path, name: str, meta: dict) -> bool:
    path = directory / name
    return path.exists() and path.stat().st_size == meta.get("bytes")


# Called after each part is checkpointed; tests replace it to stop an export
# half-way the way a killed worker would.
def after_part(export: TenantExport, name: str) -> None:
    return None


def _start(export: TenantExport) -> TenantExport:
    tenant = export.tenant
    changes = {"status": TenantExport.Status.RUNNING, "attempts": F("attempts") + 1, "error": "",
               "heartbeat_at": timezone.now()}
    if not export.rows_estimate:
        changes["rows_estimate"] = catalog.rows_estimate(tenant.shard.alias, tenant.schema_name)
    TenantExport.objects.filter(pk=export.pk).update(**changes)
    export.refresh_from_db()
    migrations = catalog.applied_migrations(tenant.shard.alias, tenant.schema_name)
    recorded = export.tables.get(MIGRATIONS_KEY)
    if recorded is None:
        _checkpoint(export, MIGRATIONS_KEY, {"applied": migrations})
    elif recorded["applied"] != migrations:
        # Parts written before a migration and after it would not load into one schema.
        _checkpoint_reset(export)
        _checkpoint(export, MIGRATIONS_KEY, {"applied": migrations})
    return export


def _checkpoint_reset(export: TenantExport) -> None:
    TenantExport.objects.filter(pk=export.pk).update(tables={})
    export.tables = {}


def _tick(progress: Progress, name: str, rows: int, size: int, written: archive.Written) -> None:
    progress(part=name, rows=rows + written.rows, size=size + written.bytes)


def _write_parts(export: TenantExport, directory: Path) -> None:
    progress = Progress(export)
    parts = parts_of(export.tenant)
    TenantExport.objects.filter(pk=export.pk).update(parts_total=len(parts))
    rows = sum(m.get("rows", 0) for n, m in export.tables.items() if n != MIGRATIONS_KEY)
    size = sum(m.get("bytes", 0) for n, m in export.tables.items() if n != MIGRATIONS_KEY)
    for name, write in parts:
        meta = export.tables.get(name)
        if meta is not None and _intact(directory, name, meta):
            continue
        progress(part=name, rows=rows, size=size, force=True)
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # Within a long table too: rows and bytes so far, and the heartbeat
        # that tells a working export from a stalled one.
        tick = partial(_tick, progress, name, rows, size)
        meta = {**write(path, tick), "attempt": export.attempts}
        rows, size = rows + meta["rows"], size + meta["bytes"]
        _checkpoint(export, name, meta)
        after_part(export, name)
    progress(part="archive", rows=rows, size=size, force=True)


def manifest_of(export: TenantExport) -> dict:
    tenant = export.tenant
    tables, parts, files = {}, {}, {}
    for name, meta in sorted(export.tables.items()):
        if name == MIGRATIONS_KEY:
            continue
        entry = {k: meta[k] for k in ("rows", "bytes", "sha256")}
        if name.startswith("tables/"):
            tables[name.removeprefix("tables/").removesuffix(".jsonl")] = {
                **entry, "file": name, "key": meta["key"], "partitions": meta["partitions"]}
        elif name.startswith("control/"):
            parts[name.removeprefix("control/").removesuffix(".jsonl")] = {**entry, "file": name}
        else:
            files = {rel: {**m, "file": f"files/{rel}"} for rel, m in meta["files"].items()}
    return {
        "format": archive.FORMAT,
        "export_id": str(export.pk),
        "exported_at": timezone.now().isoformat(),
        "tenant": {"id": tenant.pk, "slug": tenant.slug, "schema": tenant.schema_name,
                   "shard": tenant.shard.name, "files_root": tenant_files_root(tenant)},
        "migrations": export.tables[MIGRATIONS_KEY]["applied"],
        "tables": tables, "control": parts, "files": files,
    }


def _assemble(export: TenantExport, directory: Path, manifest: dict) -> Path:
    """One tar from the parts, the manifest first; memory stays at tarfile's block size."""
    path = directory / "archive.tar"
    root = manifest["tenant"]["files_root"]
    with tarfile.open(path, "w") as tar:
        archive.add_bytes(tar, "manifest.json", archive.manifest_bytes(manifest))
        for entry in [*manifest["tables"].values(), *manifest["control"].values()]:
            tar.add(directory / entry["file"], arcname=entry["file"], recursive=False)
        for rel, entry in manifest["files"].items():
            with default_storage.open(f"{root}/{rel.removeprefix('exports/')}", "rb") as handle:
                archive.add_stream(tar, entry["file"], handle, entry["bytes"])
    return path


def _store(export: TenantExport, path: Path) -> str:
    name = archive_name(export)
    if default_storage.exists(name):
        default_storage.delete(name)
    with open(path, "rb") as handle:
        return default_storage.save(name, File(handle))


def export_run(export_id) -> TenantExport:
    """Produce (or finish) an export. Idempotent: a finished export is not
    redone; an interrupted one goes on from its last recorded part."""
    export = TenantExport.objects.select_related("tenant__shard", "tenant__plan").filter(pk=export_id).first()
    if export is None or export.status == TenantExport.Status.DONE:
        return export
    export = _start(export)
    directory = work_dir(export)
    directory.mkdir(parents=True, exist_ok=True)
    _write_parts(export, directory)
    export.refresh_from_db()
    current = catalog.applied_migrations(export.tenant.shard.alias, export.tenant.schema_name)
    if current != export.tables[MIGRATIONS_KEY]["applied"]:
        raise RuntimeError("the tenant's schema was migrated during the export; run it again")
    manifest = manifest_of(export)
    manifest_data = archive.manifest_bytes(manifest)
    assembled = _assemble(export, directory, manifest)
    if not TenantExport.objects.filter(pk=export.pk).exists():
        # The tenant was erased while this export ran: nothing of it may be stored.
        shutil.rmtree(directory, ignore_errors=True)
        return None
    stored = _store(export, assembled)
    with transaction.atomic(using="default"):
        TenantExport.objects.filter(pk=export.pk).update(
            status=TenantExport.Status.DONE, file_name=stored, size_bytes=default_storage.size(stored),
            manifest_sha256=hashlib.sha256(manifest_data).hexdigest(), current_part="", finished_at=timezone.now(),
            heartbeat_at=timezone.now())
    shutil.rmtree(directory, ignore_errors=True)
    export.refresh_from_db()
    return export


def export_fail(*, export_id, error: str) -> None:
    TenantExport.objects.filter(pk=export_id).exclude(status=TenantExport.Status.DONE).update(
        status=TenantExport.Status.FAILED, error=error[:2000], finished_at=timezone.now())


def read_manifest(path) -> dict:
    with tarfile.open(path, "r:") as tar:
        return json.load(tar.extractfile("manifest.json"))
