"""Readings of shared state, taken when Prometheus scrapes /metrics.

Queue depth and age, dead letters, outbox backlog, shards, replica lag and the
partition horizon are facts about Redis, the broker and the databases, not
about a process, so no process counts them: the web process that answers a
scrape reads them. Each source is read on its own with a short bound
(METRICS_TIMEOUT_SECONDS per server) and its reading kept for
METRICS_CACHE_SECONDS, so frequent scrapes, or several gunicorn workers
answering them, cost one reading per interval; a source that fails is
reported as ``saas_metrics_collector_up{collector=...} 0`` and the others
still come through. Every web pod reports the same readings: rules and
dashboards aggregate them with ``max``, never ``sum``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

# Where kombu's Redis transport keeps a queue's messages of each priority
# (priority 0, the platform's only one, is the bare queue name).
REDIS_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class CachedCollector:
    """One source: ``read()`` yields metric families; failures and the time
    taken are reported beside them."""

    def __init__(self, name: str, read: Callable[[], Iterable[GaugeMetricFamily]]):
        self.name = name
        self.read = read
        self._lock = threading.Lock()
        self._families: list = []
        self._up = 0
        self._took = 0.0
        self._at = float("-inf")

    def collect(self):
        with self._lock:
            if time.monotonic() - self._at >= settings.METRICS_CACHE_SECONDS:
                started = time.monotonic()
                try:
                    self._families, self._up = list(self.read()), 1
                except Exception as exc:  # a scrape reports the failure; it never fails itself
                    logger.warning("metrics collector failed", extra={"collector": self.name, "error": str(exc)[:200]})
                    self._families, self._up = [], 0
                self._took = time.monotonic() - started
                self._at = time.monotonic()
            families, up, took = list(self._families), self._up, self._took
        yield from families
        yield _gauge("saas_metrics_collector_up", "1 when the last reading of this source worked",
                     ["collector"], [((self.name,), up)])
        yield _gauge("saas_metrics_collector_seconds", "Time the last reading of this source took",
                     ["collector"], [((self.name,), took)])


def _gauge(name: str, documentation: str, labels: list[str], samples) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def _shard_name(alias: str) -> str:
    return alias.removeprefix(settings.SHARD_ALIAS_PREFIX)


def _bounded_cursor(alias: str):
    """A cursor in a transaction whose statements stop after METRICS_TIMEOUT_SECONDS
    (SET LOCAL: safe behind PgBouncer in transaction pooling)."""

    class _Bounded:
        def __enter__(self):
            self.atomic = transaction.atomic(using=alias)
            self.atomic.__enter__()
            self.cursor = connections[alias].cursor()
            self.cursor.execute("SET LOCAL statement_timeout = %s", [int(settings.METRICS_TIMEOUT_SECONDS * 1000)])
            return self.cursor

        def __exit__(self, *exc):
            self.cursor.close()
            return self.atomic.__exit__(*exc)

    return _Bounded()


def _close(alias: str) -> None:
    try:
        connections[alias].close()
    except DatabaseError:
        pass


# --- queues --------------------------------------------------------------


def read_queues():
    """Messages waiting per queue and the age of the oldest (from its
    ``sent_at`` header, stamped at publish by apps/jobs/metrics.py)."""
    from celery import current_app as app

    url = app.conf.broker_url
    queues = list(settings.TASK_QUEUES)
    if url.startswith(("amqp", "pyamqp")):
        yield from _amqp_queues(app, queues)
    else:
        yield from _redis_queues(url, queues)


def _redis_queues(url: str, queues: list[str]):
    from apps.caching.connections import metrics_client

    client = metrics_client(url)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for suffix in REDIS_PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
                pipe.lindex(queue + suffix, -1)  # LPUSH in, BRPOP out: the oldest is last
        replies = iter(pipe.execute())
    finally:
        client.close()
    now = time.time()
    depth, age = [], []
    for queue in queues:
        count, oldest = 0, None
        for _ in REDIS_PRIORITY_SUFFIXES:
            length, last = next(replies), next(replies)
            count += length
            sent_at = _sent_at(last)
            if sent_at is not None:
                oldest = sent_at if oldest is None else min(oldest, sent_at)
        depth.append(((queue,), count))
        age.append(((queue,), max(0.0, now - oldest) if oldest is not None else 0.0))
    yield _gauge("saas_queue_messages", "Messages waiting in the queue", ["queue"], depth)
    yield _gauge("saas_queue_oldest_message_age_seconds",
                 "Seconds since the oldest waiting message was published (0 when empty)", ["queue"], age)


def _sent_at(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get("sent_at")
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def _amqp_queues(app, queues: list[str]):
    """RabbitMQ: counts from a passive declare. It cannot show a message
    without delivering it, so the age comes from RabbitMQ's own exporter
    (rabbitmq_queue_head_message_timestamp), not from here."""
    timeout = settings.METRICS_TIMEOUT_SECONDS
    depth, consumers = [], []
    with app.connection_for_read(connect_timeout=timeout,
                                 transport_options={"read_timeout": timeout, "write_timeout": timeout,
                                                    "max_retries": 0}) as connection:
        connection.ensure_connection(max_retries=1)
        for queue in queues:
            channel = connection.channel()
            try:
                _, count, consumer_count = channel.queue_declare(queue, passive=True)
            except connection.channel_errors:  # not declared yet: nothing waits there
                count, consumer_count = 0, 0
            finally:
                try:
                    channel.close()
                except Exception:
                    pass
            depth.append(((queue,), count))
            consumers.append(((queue,), consumer_count))
    yield _gauge("saas_queue_messages", "Messages waiting in the queue", ["queue"], depth)
    yield _gauge("saas_queue_consumers", "Consumers on the queue (RabbitMQ only)", ["queue"], consumers)


# --- dead letters and outboxes ----------------------------------------------


def read_dead_letters():
    from django.db.models import Count

    from apps.jobs.models import DeadLetter

    with _bounded_cursor("default"):
        rows = list(DeadLetter.objects.filter(status=DeadLetter.Status.DEAD)
                    .values_list("task_name", "queue").annotate(n=Count("id")).order_by())
    yield _gauge("saas_dead_letters", "Dead letters waiting for an operator", ["task", "queue"],
                 [((task, queue), n) for task, queue, n in rows])


def read_outboxes():
    """Unsent rows and the age of the oldest: the control outbox, and the
    tenant outboxes summed per shard over at most
    METRICS_TENANT_SCHEMAS_PER_SHARD schemas (one UNION ALL per shard)."""
    from django.db.models import Count, Min

    from apps.jobs.models import OutboxMessage
    from apps.outbox.models import TenantOutboxMessage

    now = dt.datetime.now(dt.UTC)
    unsent, age, scanned = [], [], []
    with _bounded_cursor("default"):
        control = OutboxMessage.objects.filter(sent_at__isnull=True).aggregate(n=Count("id"), oldest=Min("created_at"))
    unsent.append((("control", ""), control["n"]))
    age.append((("control", ""), _age(now, control["oldest"])))
    table = TenantOutboxMessage._meta.db_table
    for alias, schemas in _tenant_schemas().items():
        try:
            with _bounded_cursor(alias) as cursor:
                count, oldest, schemas_read = _tenant_outbox_totals(cursor, table, schemas)
        except DatabaseError as exc:
            logger.warning("outbox reading failed", extra={"shard": alias, "error": str(exc)[:200]})
            _close(alias)
            continue
        shard = _shard_name(alias)
        unsent.append((("tenant", shard), count))
        age.append((("tenant", shard), _age(now, oldest)))
        scanned.append(((shard,), schemas_read))
    yield _gauge("saas_outbox_unsent", "Outbox rows not sent yet", ["plane", "shard"], unsent)
    yield _gauge("saas_outbox_oldest_unsent_age_seconds", "Age of the oldest unsent outbox row (0 when none)",
                 ["plane", "shard"], age)
    yield _gauge("saas_outbox_schemas_read", "Tenant schemas whose outbox the last reading covered", ["shard"], scanned)


def _age(now: dt.datetime, oldest: dt.datetime | None) -> float:
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0


def _tenant_schemas() -> dict[str, list[str]]:
    """Registry's schemas per reachable shard, at most METRICS_TENANT_SCHEMAS_PER_SHARD each."""
    from apps.tenancy import planes, replicas
    from apps.tenancy.models import Tenant

    aliases = [a for a in planes.shard_aliases() if not replicas.presumed_down(a)]
    by_alias: dict[str, list[str]] = {alias: [] for alias in aliases}
    with _bounded_cursor("default"):
        rows = list(Tenant.objects.filter(shard__alias__in=aliases).exclude(schema_name="public")
                    .values_list("shard__alias", "schema_name").order_by("schema_name"))
    for alias, schema in rows:
        if len(by_alias[alias]) < settings.METRICS_TENANT_SCHEMAS_PER_SHARD:
            by_alias[alias].append(schema)
    return by_alias


def _tenant_outbox_totals(cursor, table: str, schemas: list[str]) -> tuple[int, dt.datetime | None, int]:
    # Only schemas that have the table (one being provisioned may not yet).
    cursor.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE c.relname = %s AND n.nspname = ANY(%s)", [table, schemas])
    present = [row[0] for row in cursor.fetchall()]
    if not present:
        return 0, None, 0
    quote = connections["default"].ops.quote_name
    union = " UNION ALL ".join(
        f"SELECT count(*) AS n, min(created_at) AS oldest FROM {quote(schema)}.{quote(table)} WHERE sent_at IS NULL"
        for schema in present)
    cursor.execute(f"SELECT coalesce(sum(n), 0), min(oldest) FROM ({union}) AS per_schema")
    count, oldest = cursor.fetchone()
    return int(count), oldest, len(present)


# --- shards, replicas, partitions -----------------------------------------


def read_shards():
    """Per shard: answers or not, tenants placed there, database size; per
    replica: lag in bytes (WAL not replayed yet) and seconds (since the last
    replayed transaction, 0 when caught up)."""
    from django.db.models import Count

    from apps.tenancy import planes
    from apps.tenancy.models import Tenant

    with _bounded_cursor("default"):
        tenants = dict(Tenant.objects.exclude(schema_name="public").values_list("shard__alias")
                       .annotate(n=Count("id")).order_by())
    up, size, placed, lag_bytes, lag_seconds, replica_up = [], [], [], [], [], []
    connections_used, connections_max = [], []
    for alias in planes.shard_aliases():
        shard = _shard_name(alias)
        placed.append(((shard,), tenants.get(alias, 0)))
        try:
            with _bounded_cursor(alias) as cursor:
                cursor.execute(
                    "SELECT pg_database_size(current_database()), "
                    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
                    "current_setting('max_connections')::int")
                database_size, in_use, limit = cursor.fetchone()
                size.append(((shard,), database_size))
                connections_used.append(((shard,), in_use))
                connections_max.append(((shard,), limit))
            up.append(((shard,), 1))
        except DatabaseError as exc:
            logger.warning("shard reading failed", extra={"shard": alias, "error": str(exc)[:200]})
            _close(alias)
            up.append(((shard,), 0))
            continue
        replica = planes.replica_alias(alias)
        if replica is None:
            continue
        try:
            with _bounded_cursor(replica) as cursor:
                cursor.execute(
                    "SELECT pg_last_wal_replay_lsn(), CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() "
                    "THEN 0 ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END")
                replayed, seconds = cursor.fetchone()
            if replayed is None:
                continue  # not a standby
            with _bounded_cursor(alias) as cursor:
                cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [replayed])
                behind = cursor.fetchone()[0]
        except DatabaseError as exc:
            logger.warning("replica reading failed", extra={"replica": replica, "error": str(exc)[:200]})
            _close(replica)
            replica_up.append(((shard,), 0))
            continue
        replica_up.append(((shard,), 1))
        lag_bytes.append(((shard,), max(0, int(behind))))
        lag_seconds.append(((shard,), max(0.0, float(seconds or 0))))
    yield _gauge("saas_shard_up", "1 when the shard's primary answers", ["shard"], up)
    yield _gauge("saas_shard_tenants", "Tenants placed on the shard", ["shard"], placed)
    yield _gauge("saas_shard_size_bytes", "Size of the shard's database", ["shard"], size)
    yield _gauge("saas_shard_connections", "Client connections open on the shard's server (all databases)",
                 ["shard"], connections_used)
    yield _gauge("saas_shard_connections_max", "The shard server's max_connections", ["shard"], connections_max)
    yield _gauge("saas_replica_up", "1 when the shard's replica answers", ["shard"], replica_up)
    yield _gauge("saas_replica_lag_bytes", "WAL the replica has not replayed yet", ["shard"], lag_bytes)
    yield _gauge("saas_replica_lag_seconds", "Seconds since the replica's last replayed transaction, 0 when caught up",
                 ["shard"], lag_seconds)


def read_moves():
    """Tenant moves: how many are open per phase and path, each open move's
    age and heartbeat age (labelled by tenant: only open moves, so the set
    stays small), and the longest write freeze of the moves finished in the
    last hour, per path."""
    from datetime import timedelta

    from django.db.models import Count, Max
    from django.utils import timezone

    from apps.tenancy.models import Move

    now = timezone.now()
    with _bounded_cursor("default"):
        open_moves = list(Move.objects.filter(finished_at__isnull=True).select_related("tenant", "source", "target"))
        by_phase = list(Move.objects.filter(finished_at__isnull=True).values_list("phase", "path")
                        .annotate(n=Count("id")).order_by())
        freezes = list(Move.objects.filter(finished_at__gte=now - timedelta(hours=1), freeze_seconds__isnull=False)
                       .values_list("path").annotate(longest=Max("freeze_seconds")).order_by())
    yield _gauge("saas_moves_in_progress", "Unfinished tenant moves", ["phase", "path"],
                 [((phase, path or "-"), n) for phase, path, n in by_phase])
    labels = ["tenant", "source", "target", "phase"]
    yield _gauge("saas_move_age_seconds", "Seconds since an unfinished move started", labels,
                 [((m.tenant.slug, m.source.name, m.target.name, m.phase), (now - m.started_at).total_seconds())
                  for m in open_moves])
    yield _gauge("saas_move_heartbeat_age_seconds", "Seconds since an unfinished move's mover last reported", labels,
                 [((m.tenant.slug, m.source.name, m.target.name, m.phase), (now - m.heartbeat_at).total_seconds())
                  for m in open_moves])
    yield _gauge("saas_move_freeze_seconds_max", "Longest write freeze of the moves finished in the last hour",
                 ["path"], [((path or "-",), seconds) for path, seconds in freezes])


PARTITION_HORIZON_SQL = r"""
SELECT n.nspname, p.relname, max(substring(c.relname FROM '_p(\d{4}_\d{2})$'))
FROM pg_class p
JOIN pg_namespace n ON n.oid = p.relnamespace
LEFT JOIN pg_inherits i ON i.inhparent = p.oid
LEFT JOIN pg_class c ON c.oid = i.inhrelid
WHERE p.relkind = 'p' AND p.relname = ANY(%s) AND n.nspname = ANY(%s)
GROUP BY 1, 2
"""


def read_partitions():
    """Months of partitions made ahead of the current one: the minimum over
    the schemas on each shard (catalogue names only, one query per shard).
    0 means next month's rows would land in the DEFAULT partition."""
    tables = list(settings.PARTITIONED_TABLES)
    today = dt.datetime.now(dt.UTC).date()
    current = today.year * 12 + today.month - 1
    ahead = []
    for alias, schemas in _tenant_schemas().items():
        if not schemas:
            continue
        try:
            with _bounded_cursor(alias) as cursor:
                cursor.execute(PARTITION_HORIZON_SQL, [tables, schemas])
                rows = cursor.fetchall()
        except DatabaseError as exc:
            logger.warning("partition reading failed", extra={"shard": alias, "error": str(exc)[:200]})
            _close(alias)
            continue
        lowest: dict[str, int] = {}
        for _schema, table, last in rows:
            months = (int(last[:4]) * 12 + int(last[5:]) - 1 - current) if last else -1
            lowest[table] = min(months, lowest.get(table, months))
        ahead.extend(((_shard_name(alias), table), months) for table, months in sorted(lowest.items()))
    yield _gauge("saas_partition_months_ahead",
                 "Months of partitions after the current month, lowest over the shard's schemas (-1: none)",
                 ["shard", "table"], ahead)


PLATFORM_COLLECTORS = [
    CachedCollector("queues", read_queues),
    CachedCollector("dead_letters", read_dead_letters),
    CachedCollector("outboxes", read_outboxes),
    CachedCollector("shards", read_shards),
    CachedCollector("partitions", read_partitions),
    CachedCollector("moves", read_moves),
]


# What apps above this one read from their own tables (webhooks' backlog)
# use the same bounded cursors and schema lists, and register here.
tenant_schemas = _tenant_schemas
bounded_cursor = _bounded_cursor
shard_name = _shard_name
gauge = _gauge


def collector_register(name: str, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
    """Add a reading (from an app's AppConfig.ready(); ops imports no app above it)."""
    if all(collector.name != name for collector in PLATFORM_COLLECTORS):
        PLATFORM_COLLECTORS.append(CachedCollector(name, read))


def platform_exposition() -> bytes:
    """What the web's /metrics answers: every process's samples and the
    shared-state readings."""
    from apps.observability.metrics import exposition

    return exposition(*PLATFORM_COLLECTORS)
