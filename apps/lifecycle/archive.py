"""The archive's parts: tables as JSON Lines in and out of PostgreSQL, checksummed.

A table leaves the shard through ``COPY (SELECT row_to_json(t) ...) TO
STDOUT`` and goes to disk chunk by chunk as the server sends it, hashed on
the way; it comes back through ``COPY ... FROM STDIN`` into a temporary
table and one ``INSERT ... SELECT`` from ``json_populate_record``. Neither
side holds more than a chunk in memory, however large the table.

The CSV options make COPY pass each JSON document through untouched: JSON
text never holds a raw control character (PostgreSQL escapes them all), so
neither the \\x02 delimiter nor the \\x01 quote ever occurs and no field is
quoted or escaped, one document per line.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from django.db import connections
from django_tenants.utils import quote_schema_name as q

from . import catalog

COPY_OPTIONS = "(FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
CHUNK = 1 << 16
# COPY hands over about a row at a time: progress is looked at once per this many bytes.
TICK_BYTES = 1 << 20
FORMAT = "tenant-export/1"


@dataclass
class Written:
    rows: int = 0
    bytes: int = 0
    sha256: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class HashingSink:
    """Counts, hashes and writes what passes through it."""

    def __init__(self, handle=None):
        self.handle = handle
        self.digest = hashlib.sha256()
        self.written = Written()

    def write(self, data) -> None:
        data = bytes(data)
        self.digest.update(data)
        self.written.bytes += len(data)
        self.written.rows += data.count(b"\n")
        if self.handle is not None:
            self.handle.write(data)

    def result(self) -> Written:
        self.written.sha256 = self.digest.hexdigest()
        return self.written


def _order_by(keys: list[str]) -> str:
    # By key, so that the same rows always give the same bytes (and checksum);
    # a table without a key is ordered by its whole row.
    return ", ".join(f"t.{q(k)}" for k in keys) if keys else "t::text"


def dump_table(alias: str, schema: str, table: str, path: Path, tick=None) -> Written:
    """Write ``table`` as JSON Lines to ``path``, ordered by its key;
    ``tick(written)`` after each chunk (progress of a long table)."""
    keys = catalog.key_columns(alias, schema, table)
    sql = (f"COPY (SELECT row_to_json(t)::text FROM {q(schema)}.{q(table)} t ORDER BY {_order_by(keys)}) "
           f"TO STDOUT {COPY_OPTIONS}")
    with open(path, "wb") as handle, connections[alias].cursor() as cursor:
        sink = HashingSink(handle)
        with cursor.cursor.copy(sql) as copy:
            next_tick = TICK_BYTES
            for chunk in copy:
                sink.write(chunk)
                if tick is not None and sink.written.bytes >= next_tick:
                    tick(sink.written)
                    next_tick += TICK_BYTES
        handle.flush()
    return sink.result()


def write_json_lines(rows: Iterable[dict], path: Path) -> Written:
    """Control-plane rows (few) as JSON Lines, keys sorted."""
    with open(path, "wb") as handle:
        sink = HashingSink(handle)
        for row in rows:
            sink.write(json.dumps(row, sort_keys=True, separators=(",", ":"), default=str).encode() + b"\n")
    return sink.result()


def hash_stream(stream) -> Written:
    sink = HashingSink()
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        sink.write(chunk)
    result = sink.result()
    result.rows = 0
    return result


def load_table(alias: str, schema: str, table: str, stream) -> Written:
    """Insert the JSON Lines of ``stream`` into ``table`` (inside the caller's
    transaction); returns what was read, for the caller to check against the manifest."""
    columns = catalog.writable_columns(alias, schema, table)
    target = f"{q(schema)}.{q(table)}"
    names = ", ".join(q(c) for c in columns)
    picked = ", ".join(f"r.{q(c)}" for c in columns)
    sink = HashingSink()
    with connections[alias].cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS lifecycle_load (doc json) ON COMMIT DROP")
        cursor.execute("TRUNCATE lifecycle_load")
        with cursor.cursor.copy(f"COPY lifecycle_load (doc) FROM STDIN {COPY_OPTIONS}") as copy:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                sink.write(chunk)
                copy.write(chunk)
        # OVERRIDING SYSTEM VALUE: identity columns keep the exported ids.
        cursor.execute(f"INSERT INTO {target} ({names}) OVERRIDING SYSTEM VALUE SELECT {picked} "
                       f"FROM lifecycle_load l, json_populate_record(NULL::{target}, l.doc) r")
    return sink.result()


def sync_sequences(alias: str, schema: str, table: str) -> None:
    """After rows came in with their ids, the next id follows the highest."""
    with connections[alias].cursor() as cursor:
        for column in catalog.writable_columns(alias, schema, table):
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [f"{q(schema)}.{q(table)}", column])
            sequence = cursor.fetchone()[0]
            if sequence:
                cursor.execute(f"SELECT setval(%s, coalesce((SELECT max({q(column)}) FROM {q(schema)}.{q(table)}), "
                               f"0) + 1, false)", [sequence])


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def add_stream(tar: tarfile.TarFile, name: str, stream, size: int) -> None:
    """Add ``size`` bytes read from ``stream`` (tarfile copies them in blocks)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    tar.addfile(info, stream)


def manifest_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, indent=1).encode()
