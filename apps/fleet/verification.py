"""Verification: checksums by key range, streamed."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from contextlib import closing

from django.conf import settings
from django.db import connections, transaction
from django_tenants.utils import quote_schema_name as q

from . import catalog
from .records import MoveVerificationFailed, TableCopy

_cursor_numbers = itertools.count()


def range_checksums(alias: str, schema: str, table: str, *, only: list[int] | None = None,
                    from_range: int | None = None) -> Iterator[tuple[int, int, str]]:
    """(range, rows, md5) per MOVE_VERIFY_RANGE_ROWS primary-key values, in order.

    The database aggregates one range at a time (an ordered aggregate is never
    hashed, so at most one range's row hashes are in memory there) and the
    rows come to this process in batches through a server-side cursor.
    Within a range rows are ordered by their own hash, so the physical order
    of the copy does not matter. A table without an integer key is split into
    1024 ranges by a hash of the row instead.

    ``only`` and ``from_range`` restrict an integer-keyed table to those
    ranges (and every range from ``from_range`` on), read through the primary
    key's index: what the online move compares again during its freeze.
    """
    key = catalog.integer_key(alias, schema, table)
    size = int(settings.MOVE_VERIFY_RANGE_ROWS)
    bucket = f"(t.{q(key)} / {size})" if key else "(hashtext(t::text) & 1023)"
    where = ""
    if key and (only is not None or from_range is not None):
        parts = [f"(t.{q(key)} >= {int(r) * size} AND t.{q(key)} < {(int(r) + 1) * size})" for r in only or ()]
        if from_range is not None:
            parts.append(f"t.{q(key)} >= {int(from_range) * size}")
        where = "WHERE " + (" OR ".join(parts) or "false")
    sql = (
        f"SELECT {bucket} AS r, count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) "
        f"FROM {q(schema)}.{q(table)} t {where} GROUP BY 1 ORDER BY 1"
    )
    connection = connections[alias]
    connection.ensure_connection()
    # A named (server-side) cursor needs a transaction: the caller's, or one here.
    with transaction.atomic(using=alias), connection.connection.cursor(name=f"move_verify_{next(_cursor_numbers)}") as cursor:
        cursor.itersize = 1000
        cursor.execute(sql)
        yield from cursor


def table_fingerprint(alias: str, schema: str, table: str) -> tuple[int, str]:
    """Row count and a checksum of the whole table, from its range checksums."""
    count, digest = 0, hashlib.md5(usedforsecurity=False)
    for number, rows, checksum in range_checksums(alias, schema, table):
        count += rows
        digest.update(f"{number}:{rows}:{checksum};".encode())
    return count, digest.hexdigest() if count else ""


def verify_table(src: str, dst: str, schema: str, table: str, **ranges) -> TableCopy:
    """Compare ``table`` range by range on both sides; its rows and checksum when equal."""
    rows, digest = 0, hashlib.md5(usedforsecurity=False)
    with closing(range_checksums(src, schema, table, **ranges)) as source, \
            closing(range_checksums(dst, schema, table, **ranges)) as target:
        while True:
            a, b = next(source, None), next(target, None)
            if a != b:
                raise MoveVerificationFailed(f"{table}: key range {(a or b)[0]} differs: source {a}, target {b}")
            if a is None:
                return TableCopy(table, rows, digest.hexdigest() if rows else "")
            rows += a[1]
            digest.update(f"{a[0]}:{a[1]}:{a[2]};".encode())


def differing_ranges(src: str, dst: str, schema: str, table: str, **ranges) -> tuple[set[int], int]:
    """Ranges whose checksums differ between the sides, and the highest range seen.

    For comparing while writes go on: a difference is not an error here,
    only a range to compare again once the source is still.
    """
    source = {r: (n, c) for r, n, c in range_checksums(src, schema, table, **ranges)}
    target = {r: (n, c) for r, n, c in range_checksums(dst, schema, table, **ranges)}
    differing = {r for r in source.keys() | target.keys() if source.get(r) != target.get(r)}
    return differing, max(source.keys() | target.keys(), default=0)

