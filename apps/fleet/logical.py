"""PostgreSQL logical replication for online tenant moves.

The online path of a tenant move (``apps.fleet.online``): a publication of the tenant's
tables on the source, a subscription on the target that copies them and then
applies the source's changes, so the copy runs while writes go on and writes
freeze only for the switch.

Written against the catalogs rather than through a library: no maintained
Python package manages publications and subscriptions across two Django
database aliases, and what is needed is a handful of statements.

Every object a move makes here is named for the move (``saas_move_<id>_<tag>``)
so that a move killed at any point leaves nothing nobody can find:
``drop_for_move`` removes them by name (rollback, retire, recovery), and
``leftovers`` lists what a shard holds for moves that are over (orphans). A
replication slot nobody reads makes its server keep WAL forever; it must not
outlive its move.

The tag (a digest of the control database's name) keeps slot names, which
are unique per server, apart between control planes sharing a server (a test
run and a development database, say).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass

from django.db import connections
from django_tenants.utils import quote_schema_name as q

PREFIX = "saas_move_"
NAME_PATTERN = re.compile(rf"^{PREFIX}(\d+)_([0-9a-f]{{8}})$")
# A table-sync worker's slot: pg_<subscription oid>_sync_<table oid>_<system id>.
SYNC_SLOT_PATTERN = re.compile(r"^pg_(\d+)_sync_\d+_\d+$")


def control_tag() -> str:
    name = connections["default"].settings_dict["NAME"]
    return hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()[:8]


@dataclass(frozen=True)
class Names:
    """Publication (source), subscription (target) and slot (source) of a move: one name."""

    move_id: int
    name: str

    @classmethod
    def for_move(cls, move_id: int) -> Names:
        return cls(move_id, f"{PREFIX}{move_id}_{control_tag()}")


def wal_level(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW wal_level")
        return cursor.fetchone()[0]


def supports_online_copy(alias: str) -> tuple[bool, str]:
    """Whether a move off ``alias`` can copy through logical replication, and why not."""
    engine = connections[alias].settings_dict.get("ENGINE", "")
    if "pgbouncer" in engine:
        # A replication connection cannot go through a transaction pool.
        return False, "the shard is reached through PgBouncer"
    level = wal_level(alias)
    if level != "logical":
        return False, f"the source server runs with wal_level={level}"
    return True, ""


def conninfo(alias: str) -> str:
    """A libpq connection string to ``alias``'s database, from the shard's settings."""
    settings_dict = connections[alias].settings_dict
    options = settings_dict.get("OPTIONS") or {}
    parts = {
        "host": settings_dict.get("HOST") or "",
        "port": str(settings_dict.get("PORT") or ""),
        "dbname": settings_dict["NAME"],
        "user": settings_dict.get("USER") or "",
        "password": settings_dict.get("PASSWORD") or "",
        "sslmode": options.get("sslmode", ""),
        "connect_timeout": str(options.get("connect_timeout", "")),
    }

    def quoted(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{key}={quoted(value)}" for key, value in parts.items() if value)


# --- setting up ------------------------------------------------------------------


def ensure_replica_identity(alias: str, schema: str, tables: list[str]) -> list[str]:
    """Tables without a primary key get REPLICA IDENTITY FULL; the ones changed.

    Once a table is published, an UPDATE or DELETE on it fails unless the
    table has a replica identity: without this a tenant's writes would break
    on the source during the move.
    """
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relreplident = 'd' "
            "AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)",
            [schema, tables],
        )
        changed = [row[0] for row in cursor.fetchall()]
        for table in changed:
            cursor.execute(f"ALTER TABLE {q(schema)}.{q(table)} REPLICA IDENTITY FULL")
    return changed


def publish(alias: str, names: Names, schema: str, tables: list[str]) -> None:
    """The publication of ``tables`` on the source.

    Partitioned tables are published as their root (publish_via_partition_root):
    the target's own partitions then receive the rows by its own bounds, and a
    partition the source adds during the move needs nothing here.
    """
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [names.name])
        if cursor.fetchone():
            cursor.execute(f"DROP PUBLICATION {q(names.name)}")
        listed = ", ".join(f"{q(schema)}.{q(t)}" for t in tables)
        cursor.execute(f"CREATE PUBLICATION {q(names.name)} FOR TABLE {listed} "
                       "WITH (publish_via_partition_root = true)")


def subscribe(target: str, source: str, names: Names) -> None:
    """The subscription on the target: copy every table, then apply changes.

    synchronous_commit=on: the apply worker then confirms each applied
    transaction at once, so the source's slot shows the target caught up
    within milliseconds (with the default, off, the confirmation waits for
    the target's WAL writer: 200-400 ms more freeze).
    """
    with connections[target].cursor() as cursor:
        cursor.execute(
            f"CREATE SUBSCRIPTION {q(names.name)} CONNECTION %s PUBLICATION {q(names.name)} "
            "WITH (copy_data = true, synchronous_commit = 'on')",
            [conninfo(source)],
        )


# --- watching ------------------------------------------------------------------


def table_states(target: str, names: Names) -> dict[str, int]:
    """Tables of the subscription by sync state: i(nit), d(ata copy), f, s(ynced), r(eady)."""
    with connections[target].cursor() as cursor:
        cursor.execute(
            "SELECT r.srsubstate, count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid "
            "JOIN pg_database d ON d.oid = s.subdbid AND d.datname = current_database() "
            "WHERE s.subname = %s GROUP BY 1",
            [names.name],
        )
        return dict(cursor.fetchall())


def subscription_exists(target: str, names: Names) -> bool:
    with connections[target].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                       "AND d.datname = current_database() WHERE s.subname = %s", [names.name])
        return cursor.fetchone() is not None


def subscription_errors(target: str, names: Names) -> int:
    """Times the subscription's workers failed (a conflict, a missing table...)."""
    with connections[target].cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(apply_error_count + sync_error_count), 0) FROM pg_stat_subscription_stats "
                       "WHERE subname = %s", [names.name])
        return int(cursor.fetchone()[0])


def current_lsn(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return cursor.fetchone()[0]


def lag_bytes(source: str, names: Names) -> int | None:
    """Source WAL the target has not confirmed yet (None: no slot yet)."""
    with connections[source].cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                       "FROM pg_replication_slots WHERE slot_name = %s", [names.name])
        row = cursor.fetchone()
        return None if row is None or row[0] is None else max(0, int(row[0]))


def confirmed(source: str, names: Names, lsn: str) -> bool:
    with connections[source].cursor() as cursor:
        cursor.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                       [lsn, names.name])
        row = cursor.fetchone()
        return bool(row and row[0])


def wait_confirmed(source: str, names: Names, lsn: str, *, timeout: float) -> float:
    """Wait until the target confirmed every change of the source up to ``lsn``; seconds waited."""
    started = time.perf_counter()
    while not confirmed(source, names, lsn):
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"the target did not confirm the source's WAL up to {lsn} within {timeout:g}s")
        time.sleep(0.005)
    return time.perf_counter() - started


def sync_sequences(source: str, target: str, schema: str) -> int:
    """Carry every sequence's position over (logical replication does not); how many.

    The target's sequences are set to the source's last value, so the next
    key the target hands out is past every key the source handed out.
    """
    with connections[source].cursor() as cursor:
        cursor.execute("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = %s "
                       "AND last_value IS NOT NULL", [schema])
        positions = cursor.fetchall()
    with connections[target].cursor() as cursor:
        for sequence, value in positions:
            cursor.execute("SELECT setval(%s, %s, true)", [f"{q(schema)}.{q(sequence)}", value])
    return len(positions)


# --- cleaning up ------------------------------------------------------------------


def _sync_slots_of(alias: str, subscription_oid: int | None) -> list[str]:
    if subscription_oid is None:
        return []
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database() "
                       "AND slot_name LIKE %s", [f"pg\\_{subscription_oid}\\_sync\\_%"])
        return [row[0] for row in cursor.fetchall()]


def drop_subscription(target: str, names: Names) -> int | None:
    """Drop the subscription on the target (and, through it, its slots on the
    source); the subscription's oid, or None if there was none. When the
    source cannot be reached the subscription is detached from its slot first
    and dropped anyway; ``drop_source_side`` removes the slot later."""
    with connections[target].cursor() as cursor:
        cursor.execute("SELECT s.oid FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                       "AND d.datname = current_database() WHERE s.subname = %s", [names.name])
        row = cursor.fetchone()
        if row is None:
            return None
        try:
            cursor.execute(f"DROP SUBSCRIPTION {q(names.name)}")
        except Exception:
            cursor.execute(f"ALTER SUBSCRIPTION {q(names.name)} DISABLE")
            cursor.execute(f"ALTER SUBSCRIPTION {q(names.name)} SET (slot_name = NONE)")
            cursor.execute(f"DROP SUBSCRIPTION {q(names.name)}")
        return row[0]


def drop_slot(alias: str, slot: str, *, wait: float = 5.0) -> bool:
    """Drop a replication slot of this database once nothing reads it; whether it was there."""
    deadline = time.monotonic() + wait
    with connections[alias].cursor() as cursor:
        while True:
            cursor.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s "
                           "AND database = current_database()", [slot])
            row = cursor.fetchone()
            if row is None:
                return False
            if row[0] is None:
                cursor.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                return True
            if time.monotonic() > deadline:
                # A walsender still serves it: the subscriber that reads it is gone or going.
                cursor.execute("SELECT pg_terminate_backend(%s)", [row[0]])
            time.sleep(0.1)


def drop_source_side(source: str, names: Names, subscription_oid: int | None = None) -> None:
    for slot in [names.name, *_sync_slots_of(source, subscription_oid)]:
        drop_slot(source, slot)
    with connections[source].cursor() as cursor:
        cursor.execute(f"DROP PUBLICATION IF EXISTS {q(names.name)}")


def drop_for_move(source: str, target: str, move_id: int) -> None:
    """Remove the subscription, slots and publication named for ``move_id``. Idempotent."""
    names = Names.for_move(move_id)
    oid = drop_subscription(target, names)
    drop_source_side(source, names, oid)


@dataclass(frozen=True)
class Leftover:
    kind: str  # publication, subscription, slot
    name: str
    move_id: int | None  # None: a table-sync slot, named for its subscription's oid only
    active: bool = False


def leftovers(alias: str) -> list[Leftover]:
    """Replication objects for moves in ``alias``'s database (named by this control plane)."""
    tag = control_tag()
    found: list[Leftover] = []

    def mine(name: str) -> int | None:
        match = NAME_PATTERN.match(name)
        return int(match.group(1)) if match and match.group(2) == tag else None

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s", [PREFIX.replace("_", "\\_") + "%"])
        found += [Leftover("publication", n, mine(n)) for (n,) in cursor.fetchall() if mine(n) is not None]
        cursor.execute("SELECT s.subname, s.subenabled FROM pg_subscription s JOIN pg_database d "
                       "ON d.oid = s.subdbid AND d.datname = current_database()")
        found += [Leftover("subscription", n, mine(n), e) for n, e in cursor.fetchall() if mine(n) is not None]
        cursor.execute("SELECT slot_name, active FROM pg_replication_slots WHERE database = current_database() "
                       "AND slot_type = 'logical'")
        for name, active in cursor.fetchall():
            if mine(name) is not None:
                found.append(Leftover("slot", name, mine(name), active))
            elif SYNC_SLOT_PATTERN.match(name):
                found.append(Leftover("slot", name, None, active))
    return found


def drop_leftover(alias: str, leftover: Leftover) -> None:
    if leftover.kind == "subscription":
        drop_subscription(alias, Names(leftover.move_id or 0, leftover.name))
    elif leftover.kind == "slot":
        drop_slot(alias, leftover.name)
    else:
        with connections[alias].cursor() as cursor:
            cursor.execute(f"DROP PUBLICATION IF EXISTS {q(leftover.name)}")
