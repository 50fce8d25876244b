"""The control database, the shards and their replicas, read routing, partitioned tables."""

from __future__ import annotations

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .environment import POSTGRES_SCHEMES, env_bool, env_float, env_int, env_named_urls, env_url

# --- data tier ------------------------------------------------------------
# The control plane (tenant registry, users, shards, ...) is `default`.
# Tenant schemas live on shards: further aliases `shard_<name>`, each a
# PostgreSQL database that may sit on another server, optionally with a
# streaming replica `shard_<name>_replica` for reads. Which tenant is on which
# shard is data (the Shard and Tenant rows); how to reach a shard is this
# configuration, so a shard can change servers without a code change.
#
#   SHARD_URLS="main=postgres://...,eu2=postgres://..."
#   SHARD_REPLICA_URLS="eu2=postgres://replica-host/..."
#
# With no SHARD_URLS, one shard `main` shares the control database.
DATABASE_URL = env_url("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/saas_platform", schemes=POSTGRES_SCHEMES)
# 10 minutes: each PostgreSQL session builds its catalog cache per tenant
# schema it meets, so a connection recycled every minute rebuilt it for every
# tenant again; with 1,000 tenants that made reads 1.6-2.4x slower at p50
# than over 10 (bin/dev bench ratios). Health checks cost no round trip.
DB_CONN_MAX_AGE = env_int("DB_CONN_MAX_AGE", 600, minimum=0, unit="seconds")
SHARD_CONNECT_TIMEOUT = env_int("SHARD_CONNECT_TIMEOUT", 2, minimum=1, unit="seconds")
SHARD_ALIAS_PREFIX = "shard_"
REPLICA_ALIAS_SUFFIX = "_replica"


def database_config(url: str, *, connect_timeout: int) -> dict:
    config = dj_database_url.parse(url, conn_max_age=DB_CONN_MAX_AGE, conn_health_checks=True)
    # django-tenants' backend, plus errors tagged with their alias and shard
    # servers that just refused a connection failing fast (failover).
    config["ENGINE"] = "apps.tenancy.postgresql_backend"
    # A dead server must fail a request (and /readyz) in seconds, not hang it.
    config.setdefault("OPTIONS", {})["connect_timeout"] = connect_timeout
    # `?pooling=transaction`: the URL reaches PgBouncer in transaction pooling
    # mode, so the tenant's schema is set inside every transaction instead of
    # once per connection (apps.tenancy.pgbouncer_backend). Per URL, so that
    # direct connections keep the cheaper session-level SET.
    pooling = config["OPTIONS"].pop("pooling", None)
    if pooling not in (None, "transaction"):
        raise ImproperlyConfigured(f"{url.split('@')[-1]}: expected pooling=transaction or none, got {pooling!r}")
    if pooling:
        config["ENGINE"] = "apps.tenancy.pgbouncer_backend"
    return config


DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 3, minimum=1, unit="seconds")
DATABASES = {"default": database_config(DATABASE_URL, connect_timeout=DB_CONNECT_TIMEOUT)}
SHARD_URLS = env_named_urls("SHARD_URLS", schemes=POSTGRES_SCHEMES) or {"main": DATABASE_URL}
SHARD_REPLICA_URLS = env_named_urls("SHARD_REPLICA_URLS", schemes=POSTGRES_SCHEMES)
if _unknown := sorted(set(SHARD_REPLICA_URLS) - set(SHARD_URLS)):
    # A replica of a shard that is not configured would never be read.
    raise ImproperlyConfigured(
        f"SHARD_REPLICA_URLS: expected names from SHARD_URLS ({', '.join(SHARD_URLS)}), got {', '.join(_unknown)}"
    )
for _shard, _url in SHARD_URLS.items():
    DATABASES[SHARD_ALIAS_PREFIX + _shard] = database_config(_url, connect_timeout=SHARD_CONNECT_TIMEOUT)
for _shard, _url in SHARD_REPLICA_URLS.items():
    _replica = database_config(_url, connect_timeout=SHARD_CONNECT_TIMEOUT)
    # In tests the replica receives the primary's test database by streaming
    # replication; it must not try to create one itself.
    _replica["TEST"] = {"MIRROR": SHARD_ALIAS_PREFIX + _shard}
    DATABASES[SHARD_ALIAS_PREFIX + _shard + REPLICA_ALIAS_SUFFIX] = _replica
# Tenant reads go to a shard's replica when one is configured and this is on.
REPLICA_READS = env_bool("REPLICA_READS", True)
# A replica further behind than this (bytes of WAL), or unreachable, is
# skipped (reads go to the primary); checked every REPLICA_CHECK_SECONDS.
REPLICA_MAX_LAG_BYTES = env_int("REPLICA_MAX_LAG_BYTES", 16 * 1024 * 1024, minimum=0, unit="bytes")
REPLICA_CHECK_SECONDS = env_float("REPLICA_CHECK_SECONDS", 5, minimum=0, unit="seconds")
# A shard primary that refused a connection is presumed down by a process for
# this long: its writes fail at once (503) and its reads go to the replica,
# instead of every request waiting out SHARD_CONNECT_TIMEOUT.
PRIMARY_RECHECK_SECONDS = env_float("PRIMARY_RECHECK_SECONDS", 5, minimum=0, unit="seconds")
# Seconds after a client's write during which its reads stay on the primary.
READ_YOUR_WRITES_SECONDS = env_float("READ_YOUR_WRITES_SECONDS", 5, minimum=0, unit="seconds")
DATABASE_ROUTERS = ["apps.tenancy.routers.ShardRouter"]
# django-tenants' own sync router only knows one database; ours replaces it.
TENANT_SYNC_ROUTER = "apps.tenancy.routers.ShardRouter"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Range-partitioned (by month) tenant tables, maintained by apps.partitions.
PARTITIONED_TABLES = ["audit_entry", "analytics_event"]
PARTITION_MONTHS_AHEAD = env_int("PARTITION_MONTHS_AHEAD", 3, minimum=1, unit="months")
PARTITION_RETENTION_MONTHS = env_int("PARTITION_RETENTION_MONTHS", 13, minimum=1, unit="months")
# Partition DDL waits at most this long for its locks, then that schema is
# reported failed and retried next run, instead of queueing every writer behind it.
PARTITION_LOCK_TIMEOUT_SECONDS = env_float("PARTITION_LOCK_TIMEOUT_SECONDS", 5, minimum=0.1, unit="seconds")
