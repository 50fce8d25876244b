"""What an export reads from a shard's catalogs: tables, keys, columns, ledger.

Tables are discovered, never listed by hand, so a table a new app or
migration adds is exported (and imported, and erased with its schema)
without a change here. Listing, partitions and sizes come from the movers'
catalog (apps/fleet/catalog.py); this adds what a file format needs.
"""

from __future__ import annotations

from django.db import connections
from django_tenants.utils import quote_schema_name as q

from apps.fleet import catalog as fleet_catalog

LEDGER_TABLE = fleet_catalog.LEDGER_TABLE


def tables(alias: str, schema: str) -> list[str]:
    """The schema's tables (partitioned ones as their root), the ledger apart, by name."""
    return [name for name, _ in fleet_catalog.tables(alias, schema)]


def partitions(alias: str, schema: str, table: str) -> list[list[str]]:
    return [[name, bound] for name, bound in fleet_catalog.partitions(alias, schema, table)]


def key_columns(alias: str, schema: str, table: str) -> list[str]:
    """The primary key's columns in key order; empty when the table has none."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.n",
            [f"{q(schema)}.{q(table)}"],
        )
        return [row[0] for row in cursor.fetchall()]


def writable_columns(alias: str, schema: str, table: str) -> list[str]:
    """Columns a load may set: all but generated ones, in table order."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
            "AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            [f"{q(schema)}.{q(table)}"],
        )
        return [row[0] for row in cursor.fetchall()]


def applied_migrations(alias: str, schema: str) -> list[list[str]]:
    """The schema's migration ledger as sorted [app, name] pairs."""
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT app, name FROM {q(schema)}.{q(LEDGER_TABLE)} ORDER BY app, name")
        return [list(row) for row in cursor.fetchall()]


def rows_estimate(alias: str, schema: str) -> int:
    """The schema's rows by the server's statistics, for progress. Read from
    the catalog and statistics views only: no lock, so a table locked by
    someone else does not hold up the start of an export."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(greatest(c.reltuples, coalesce(s.n_live_tup, 0))), 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname <> %s", [schema, LEDGER_TABLE])
        return int(cursor.fetchone()[0])
