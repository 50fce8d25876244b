"""What the mover reads from a shard's catalogs about a tenant schema."""

from __future__ import annotations

from django.db import connections
from django_tenants.utils import quote_schema_name as q

LEDGER_TABLE = "django_migrations"


def tables(alias: str, schema: str) -> list[tuple[str, str]]:
    """(table, relkind) of the schema's tables, partitions excluded, by name."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> %s "
            "ORDER BY c.relname",
            [schema, LEDGER_TABLE],
        )
        return cursor.fetchall()


def partitions(alias: str, schema: str, table: str) -> list[tuple[str, str]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [f"{q(schema)}.{q(table)}"],
        )
        return cursor.fetchall()


def columns(alias: str, schema: str, table: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum",
            [f"{q(schema)}.{q(table)}"],
        )
        return [row[0] for row in cursor.fetchall()]


def integer_key(alias: str, schema: str, table: str) -> str | None:
    """The table's leading primary-key column when it is an integer."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)",
            [f"{q(schema)}.{q(table)}"],
        )
        row = cursor.fetchone()
        return row[0] if row else None


def schema_size(alias: str, schema: str) -> tuple[int, int]:
    """(rows, bytes) of the schema's tables by the server's statistics: estimates, for progress."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(greatest(c.reltuples, coalesce(s.n_live_tup, 0))), 0)::bigint, "
            "coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname <> %s",
            [schema, LEDGER_TABLE],
        )
        rows, size = cursor.fetchone()
        return int(rows), int(size)

