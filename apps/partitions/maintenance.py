"""Partition maintenance over every tenant schema on every shard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connections, transaction

from apps.tenancy.migrations_runner import tenant_schemas_by_alias

from . import partitions


@dataclass
class MaintenanceResult:
    schemas: int = 0
    created: int = 0
    dropped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def maintain_all(
    aliases: list[str],
    *,
    months_ahead: int,
    retention_months: int | None,
    today: dt.date | None = None,
    dry_run: bool = False,
    report: Callable[[str], None] = lambda line: None,
) -> MaintenanceResult:
    result = MaintenanceResult()
    today = today or dt.date.today()
    for alias, schemas in tenant_schemas_by_alias(aliases).items():
        for schema in schemas:
            result.schemas += 1
            try:
                with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                    changes = partitions.maintain(
                        cursor, schema, today=today, months_ahead=months_ahead,
                        retention_months=retention_months, dry_run=dry_run,
                    )
            except Exception as exc:  # one schema's failure is reported; the rest go on
                result.failed[f"{alias}:{schema}"] = f"{type(exc).__name__}: {exc}"
                report(f"[{alias}] {schema} FAILED: {exc}")
                continue
            result.created += len(changes.created)
            result.dropped += len(changes.dropped)
            for name in changes.created:
                report(f"[{alias}] {'would create' if dry_run else 'created'} {name}")
            for name in changes.dropped:
                report(f"[{alias}] {'would drop' if dry_run else 'detached and dropped'} {name}")
    return result
