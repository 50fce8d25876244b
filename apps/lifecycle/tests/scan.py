"""Looking for a string everywhere a tenant's data can be: every table of
every schema of every database (shards and replicas), every Redis key and
value, every file of the export storage."""

from __future__ import annotations

import os
import time

from django.conf import settings
from django.db import connections


def wait_for_replicas(timeout: float = 30.0) -> None:
    """Until each replica has replayed everything its primary has written so far."""
    for alias in settings.DATABASES:
        if not alias.endswith(settings.REPLICA_ALIAS_SUFFIX):
            continue
        primary = alias.removesuffix(settings.REPLICA_ALIAS_SUFFIX)
        with connections[primary].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()")
            target = cursor.fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])
                if cursor.fetchone()[0]:
                    break
            assert time.monotonic() < deadline, f"{alias} did not catch up"
            time.sleep(0.1)


def database_matches(marker: str) -> dict[str, int]:
    """{"alias:schema.table": rows whose text holds ``marker``} over every table."""
    found = {}
    for alias in settings.DATABASES:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = "
                           "'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')")
            tables = cursor.fetchall()
            for schema, table in tables:
                cursor.execute(f'SELECT count(*) FROM "{schema}"."{table}" t WHERE t::text ILIKE %s', [f"%{marker}%"])
                count = cursor.fetchone()[0]
                if count:
                    found[f"{alias}:{schema}.{table}"] = count
    return found


def _values(client, key) -> list:
    kind = client.type(key).decode()
    if kind == "string":
        return [client.get(key)]
    if kind == "hash":
        return [*client.hgetall(key).keys(), *client.hgetall(key).values()]
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
    return []


def redis_matches(marker: str) -> list[str]:
    from apps.caching.connections import redis_client

    client = redis_client()
    needle = marker.lower().encode()
    found = []
    for key in client.scan_iter(count=1000):
        values = [key, *_values(client, key)]
        if any(needle in (v if isinstance(v, bytes) else str(v).encode()).lower() for v in values):
            found.append(key.decode(errors="replace"))
    return found


def file_matches(marker: str) -> list[str]:
    needle = marker.lower().encode()
    found = []
    for root in {settings.MEDIA_ROOT, settings.TENANT_EXPORT_WORK_DIR}:
        for directory, _, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                with open(path, "rb") as handle:
                    if needle in handle.read().lower() or needle in path.lower().encode():
                        found.append(path)
    return found
