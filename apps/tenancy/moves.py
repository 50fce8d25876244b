"""Move a tenant's schema from one shard to another without losing a row.

Sequence (see platform/runbooks/tenant-move.md):

1. Prepare: create and migrate the schema on the target (no freeze yet).
2. Freeze: the tenant's writes answer 503 + Retry-After; reads go on.
3. Copy, in one transaction per side: lock the source tables in SHARE mode
   (waits for writes already in flight, blocks any late one; reads go on),
   stream every table with COPY, set identity sequences, then verify row
   counts and a checksum per table. The target commits.
4. Flip: the registry points the tenant at the target and unfreezes it.
5. Retire: the source transaction renames the source schema before it
   commits, so a write that was blocked on the lock fails loudly instead of
   landing in a schema nobody reads; then the renamed schema is dropped.

Any failure before the flip drops the target copy and unfreezes the tenant on
the source, where nothing was changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django_tenants.utils import quote_schema_name as q

from . import planes, schemas
from .models import Shard, Tenant

logger = logging.getLogger(__name__)

LEDGER_TABLE = "django_migrations"


class MoveVerificationFailed(RuntimeError):
    pass


@dataclass
class TableCopy:
    table: str
    rows: int
    checksum: str


@dataclass
class MoveReport:
    tenant: str
    source: str
    target: str
    tables: list[TableCopy] = field(default_factory=list)
    bytes_copied: int = 0
    freeze_seconds: float = 0.0
    total_seconds: float = 0.0


def _tables(alias: str, schema: str) -> list[tuple[str, str]]:
    """(table, relkind) of the schema's tables, partitions excluded."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> %s "
            "ORDER BY c.relname",
            [schema, LEDGER_TABLE],
        )
        return cursor.fetchall()


def _partitions(alias: str, schema: str, table: str) -> list[tuple[str, str]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [f"{q(schema)}.{q(table)}"],
        )
        return cursor.fetchall()


def _columns(alias: str, schema: str, table: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum",
            [f"{q(schema)}.{q(table)}"],
        )
        return [row[0] for row in cursor.fetchall()]


def table_fingerprint(alias: str, schema: str, table: str) -> tuple[int, str]:
    """Row count and an order-independent checksum of every row's text."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') "
            f"FROM (SELECT md5(t::text) AS h FROM {q(schema)}.{q(table)} t) rows"
        )
        count, checksum = cursor.fetchone()
        return count, checksum


def _copy_table(source: str, target: str, schema: str, table: str, columns: list[str]) -> int:
    column_list = ", ".join(q(c) for c in columns)
    copied = 0
    src = connections[source].cursor().cursor  # the psycopg cursor, for COPY
    dst = connections[target].cursor().cursor
    with (
        src.copy(f"COPY (SELECT {column_list} FROM {q(schema)}.{q(table)}) TO STDOUT (FORMAT BINARY)") as out,
        dst.copy(f"COPY {q(schema)}.{q(table)} ({column_list}) FROM STDIN (FORMAT BINARY)") as into,
    ):
        for chunk in out:
            into.write(chunk)
            copied += len(chunk)
    return copied


def _sync_identity_sequences(target: str, schema: str, table: str, columns: list[str]) -> None:
    with connections[target].cursor() as cursor:
        for column in columns:
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [f"{q(schema)}.{q(table)}", column])
            sequence = cursor.fetchone()[0]
            if sequence:
                cursor.execute(
                    f"SELECT setval(%s, coalesce((SELECT max({q(column)}) FROM {q(schema)}.{q(table)}), 0) + 1, false)",
                    [sequence],
                )


def _set_frozen(tenant: Tenant, frozen: bool, shard: Shard | None = None) -> None:
    tenant.writes_frozen = frozen
    fields = ["writes_frozen", "updated_at"]
    if shard is not None:
        tenant.shard = shard
        fields.append("shard")
    tenant.save(update_fields=fields)  # signals drop the cached host lookups


def tenant_move(
    *,
    tenant: Tenant,
    target: Shard,
    report: Callable[[str], None] = lambda line: None,
    before_flip: Callable[[], None] | None = None,
) -> MoveReport:
    """Move ``tenant`` to the ``target`` shard; see the module docstring.

    ``before_flip`` runs after the copy is verified and before the registry
    changes (an operator confirmation, or a fault injected by a test).
    """
    source = tenant.shard
    if source is None:
        raise ValidationError({"tenant": "The platform tenant has no data to move."})
    if source.pk == target.pk:
        raise ValidationError({"shard": f"Tenant '{tenant.slug}' is already on shard '{target.name}'."})
    if target.state != Shard.State.ACTIVE:
        raise ValidationError({"shard": f"Shard '{target.name}' is {target.state} and takes no tenants."})
    if target.alias not in planes.shard_aliases():
        raise ValidationError({"shard": f"Shard '{target.name}' has no connection configured here."})
    schema, src, dst = tenant.schema_name, source.alias, target.alias
    required = schemas.required_tenant_migrations()
    if not required <= schemas.applied_migrations_by_schema(src, [schema])[schema]:
        raise ValidationError({"tenant": f"Schema {schema} is behind on migrations; run `manage.py migrate` first."})

    result = MoveReport(tenant=tenant.slug, source=source.name, target=target.name)
    started = time.perf_counter()
    if schemas.schema_exists(dst, schema):
        # Only a failed earlier move can have left it: the registry says the
        # tenant lives on the source, and schema names are unique per tenant.
        report(f"dropping leftover {schema} on {target.name} from an earlier attempt")
        schemas.drop_schema(dst, schema)
    report(f"preparing {schema} on {target.name}")
    schemas.create_schema(dst, schema)
    schemas.migrate_schema(dst, schema)

    frozen_at = None
    flipped = False
    try:
        _set_frozen(tenant, True)
        frozen_at = time.perf_counter()
        report(f"writes frozen for {tenant.slug}")
        with transaction.atomic(using=src):
            tables = _tables(src, schema)
            with connections[src].cursor() as cursor:
                for table, _ in tables:
                    cursor.execute(f"LOCK TABLE {q(schema)}.{q(table)} IN SHARE MODE")
            with transaction.atomic(using=dst):
                with connections[dst].cursor() as cursor:
                    cursor.execute(f"TRUNCATE {', '.join(f'{q(schema)}.{q(t)}' for t, _ in tables)}")
                for table, relkind in tables:
                    if relkind == "p":
                        with connections[dst].cursor() as cursor:
                            for partition, bound in _partitions(src, schema, table):
                                cursor.execute(
                                    f"CREATE TABLE IF NOT EXISTS {q(schema)}.{q(partition)} "
                                    f"PARTITION OF {q(schema)}.{q(table)} {bound}"
                                )
                    columns = _columns(src, schema, table)
                    result.bytes_copied += _copy_table(src, dst, schema, table, columns)
                    _sync_identity_sequences(dst, schema, table, columns)
                for table, _ in tables:
                    source_print = table_fingerprint(src, schema, table)
                    target_print = table_fingerprint(dst, schema, table)
                    if source_print != target_print:
                        raise MoveVerificationFailed(
                            f"{table}: source {source_print[0]} rows/{source_print[1]}, "
                            f"target {target_print[0]} rows/{target_print[1]}"
                        )
                    result.tables.append(TableCopy(table, *source_print))
                    report(f"verified {table}: {source_print[0]} rows, checksum {source_print[1][:12]}")
            # The target copy is committed and verified.
            if before_flip is not None:
                before_flip()
            _set_frozen(tenant, False, shard=target)
            flipped = True
            result.freeze_seconds = time.perf_counter() - frozen_at
            report(f"{tenant.slug} now lives on {target.name}; writes open again")
            retired = f"{schema}_moved_{int(time.time())}"[:63]
            with connections[src].cursor() as cursor:
                cursor.execute(f"ALTER SCHEMA {q(schema)} RENAME TO {q(retired)}")
    except BaseException:
        if not flipped:
            logger.warning("tenant move failed before the flip; rolling back", extra={"tenant_slug": tenant.slug})
            try:
                schemas.drop_schema(dst, schema)
            except Exception:  # target unreachable: the leftover is dropped by the next attempt
                logger.exception("could not drop the partial copy on the target")
            tenant.refresh_from_db()
            if frozen_at is not None or tenant.writes_frozen:
                _set_frozen(tenant, False, shard=source)
        raise
    schemas.drop_schema(src, retired)
    report(f"dropped the source copy on {source.name}")
    result.total_seconds = time.perf_counter() - started
    logger.info(
        "tenant moved",
        extra={"tenant_slug": tenant.slug, "source": source.name, "target": target.name,
               "freeze_seconds": round(result.freeze_seconds, 3), "bytes": result.bytes_copied},
    )
    return result
