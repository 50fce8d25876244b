"""Tenant resolution by host, and moving tenants between shards."""

from __future__ import annotations

from .environment import env_float, env_int

# Seconds a hostname -> tenant lookup stays in the cache; changes to a tenant
# or a domain delete the entries, so this only bounds memory for idle hosts.
TENANT_CACHE_TIMEOUT = env_int("TENANT_CACHE_TIMEOUT", 3600, minimum=1, unit="seconds")
TENANT_NEGATIVE_CACHE_TIMEOUT = env_int("TENANT_NEGATIVE_CACHE_TIMEOUT", 30, minimum=0, unit="seconds")

# Tenant moves (apps/fleet/moves.py). The write freeze is a lease the mover
# renews every third of MOVE_LEASE_SECONDS: a dead mover's tenant opens for
# writes again within that time. After freezing, the mover waits
# MOVE_DRAIN_SECONDS for requests that passed the freeze check to finish, then
# locks every source table in one statement that waits at most
# MOVE_LOCK_TIMEOUT_SECONDS, below PostgreSQL's deadlock_timeout (1 s), so the
# mover, never a client's write, is the side that gives way; it tries
# MOVE_LOCK_ATTEMPTS times. Verification compares checksums per range of
# MOVE_VERIFY_RANGE_ROWS primary-key values. Beat looks for moves whose mover
# stopped heartbeating every MOVE_RECOVERY_SECONDS; schemas no registry entry
# explains are dropped by `shard_orphans --drop` only after ORPHAN_GRACE_HOURS.
MOVE_LEASE_SECONDS = env_float("MOVE_LEASE_SECONDS", 30, minimum=1, unit="seconds")
MOVE_DRAIN_SECONDS = env_float("MOVE_DRAIN_SECONDS", 1, minimum=0, unit="seconds")
MOVE_LOCK_TIMEOUT_SECONDS = env_float("MOVE_LOCK_TIMEOUT_SECONDS", 0.5, minimum=0.05, unit="seconds")
MOVE_LOCK_ATTEMPTS = env_int("MOVE_LOCK_ATTEMPTS", 20, minimum=1)
MOVE_VERIFY_RANGE_ROWS = env_int("MOVE_VERIFY_RANGE_ROWS", 10_000, minimum=1)
MOVE_RECOVERY_SECONDS = env_float("MOVE_RECOVERY_SECONDS", 30, minimum=1, unit="seconds")
ORPHAN_GRACE_HOURS = env_float("ORPHAN_GRACE_HOURS", 24, minimum=0, unit="hours")
# Online moves (logical replication, apps/fleet/online.py):
# WAL bytes the target may still lag behind when an online move compares ranges, unfrozen.
MOVE_CATCH_UP_BYTES = env_int("MOVE_CATCH_UP_BYTES", 1_000_000, minimum=0, unit="bytes")
# Pause after the freeze, so requests past the freeze check finish instead of getting 503.
MOVE_ONLINE_DRAIN_SECONDS = env_float("MOVE_ONLINE_DRAIN_SECONDS", 0.2, minimum=0, unit="seconds")
# Longest wait, source tables locked, for the target to confirm the last change.
MOVE_ONLINE_CATCH_UP_TIMEOUT_SECONDS = env_float("MOVE_ONLINE_CATCH_UP_TIMEOUT_SECONDS", 5, minimum=0.1,
                                                 unit="seconds")
