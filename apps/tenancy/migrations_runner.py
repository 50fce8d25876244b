"""Bring every tenant schema on every shard to the current migration state.

Fast when there is nothing to do: the applied migrations of all schemas on a
shard are read in one query and compared with the migrations on disk, so only
schemas that are behind pay for Django's migrate. Shards run in parallel
(one thread each, each with its own connections); a failed schema is reported
and the rest go on; a re-run picks up exactly the schemas still behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import connections

from . import schemas
from .models import Tenant


@dataclass
class ShardResult:
    alias: str
    up_to_date: int = 0
    migrated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RunResult:
    shards: list[ShardResult]
    seconds: float

    @property
    def failed(self) -> dict[str, str]:
        return {f"{r.alias}:{schema}": error for r in self.shards for schema, error in r.failed.items()}

    def totals(self) -> tuple[int, int, int]:
        return (
            sum(r.up_to_date for r in self.shards),
            sum(len(r.migrated) for r in self.shards),
            sum(len(r.failed) for r in self.shards),
        )


def tenant_schemas_by_alias(aliases: list[str], only_schema: str | None = None) -> dict[str, list[str]]:
    by_alias: dict[str, list[str]] = {alias: [] for alias in aliases}
    tenants = Tenant.objects.filter(shard__alias__in=aliases).exclude(schema_name="public")
    if only_schema:
        tenants = tenants.filter(schema_name=only_schema)
    for schema, alias in tenants.values_list("schema_name", "shard__alias").order_by("schema_name"):
        by_alias[alias].append(schema)
    return by_alias


def _migrate_shard(alias: str, schema_names: list[str], required, report: Callable[[str], None]) -> ShardResult:
    result = ShardResult(alias=alias)
    started = time.perf_counter()
    try:
        existing = schemas.existing_schemas(alias, schema_names)
        for schema in schema_names:
            if schema not in existing:
                result.failed[schema] = "the registry places this schema here, but the shard has no such schema"
        applied = schemas.applied_migrations_by_schema(alias, sorted(existing))
        pending = [s for s in sorted(existing) if not required <= applied.get(s, set())]
        result.up_to_date = len(existing) - len(pending)
        report(f"[{alias}] {len(schema_names)} schemas, {len(pending)} behind")
        for index, schema in enumerate(pending, start=1):
            schema_started = time.perf_counter()
            try:
                schemas.migrate_schema(alias, schema)
            except Exception as exc:  # reported per schema; the others go on
                result.failed[schema] = f"{type(exc).__name__}: {exc}"
                report(f"[{alias}] {index}/{len(pending)} {schema} FAILED: {exc}")
            else:
                result.migrated.append(schema)
                report(f"[{alias}] {index}/{len(pending)} {schema} migrated in {time.perf_counter() - schema_started:.2f}s")
    except Exception as exc:  # the shard itself is unreachable
        for schema in schema_names:
            result.failed.setdefault(schema, f"shard unavailable: {type(exc).__name__}: {exc}")
        report(f"[{alias}] FAILED: {exc}")
    finally:
        if threading.current_thread() is not threading.main_thread():
            connections.close_all()
    result.seconds = time.perf_counter() - started
    return result


def migrate_tenant_schemas(
    aliases: list[str], *, only_schema: str | None = None, report: Callable[[str], None] = print
) -> RunResult:
    started = time.perf_counter()
    by_alias = tenant_schemas_by_alias(aliases, only_schema)
    required = schemas.required_tenant_migrations()
    lock = threading.Lock()

    def locked_report(line: str) -> None:
        with lock:
            report(line)

    with ThreadPoolExecutor(max_workers=max(1, len(aliases))) as pool:
        futures = [
            pool.submit(_migrate_shard, alias, names, required, locked_report) for alias, names in by_alias.items()
        ]
        results = [future.result() for future in futures]
    return RunResult(shards=results, seconds=time.perf_counter() - started)
