"""Webhook metrics: counted by the delivery workers, and the backlog read at scrape time.

Counters and the latency histogram live in the worker processes (merged
over a worker's pool like the task metrics, apps/jobs/metrics.py). The
backlog is a fact about the shards, read by the web process answering the
scrape (the readings of apps/ops/collectors.py, where ``reading`` is
registered): due deliveries, how overdue the oldest is, and endpoints
disabled for failing, per shard, over at most METRICS_TENANT_SCHEMAS_PER_SHARD
schemas.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import DatabaseError
from prometheus_client import Counter, Histogram

logger = logging.getLogger(__name__)

deliveries = Counter("saas_webhook_deliveries_total", "Webhook delivery attempts and put-offs by outcome",
                     ["outcome"])
attempt_seconds = Histogram("saas_webhook_attempt_seconds", "Time one webhook attempt took, whatever its answer",
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15))
endpoints_disabled = Counter("saas_webhook_endpoints_disabled_total", "Endpoints disabled after failing too long")


def count(results) -> None:
    """delivered; retrying (an attempt failed, another will come); failed
    (given up); deferred (not tried: the host's circuit is open). A delivery
    handed back untried at the end of a run is not counted."""
    for result in results:
        if result.outcome is None:
            if result.why:
                deliveries.labels(outcome="deferred").inc()
            continue
        attempt_seconds.observe(result.outcome.seconds)
        state = result.delivery.state
        outcome = "retrying" if state == "pending" else state
        deliveries.labels(outcome=outcome).inc()


# --- at scrape time -----------------------------------------------------------------

# Due means a run could take it now (the claim's rule, apps/webhooks/delivery.py):
# waiting behind an earlier event, out a backoff or behind an open circuit is not late.
# Events not fanned out yet count too (each stands for its deliveries to be).
BACKLOG_SQL = """
SELECT count(*) AS count, min(d.next_attempt_at) AS min FROM {schema}.{delivery} d
JOIN {schema}.{endpoint} e ON e.id = d.endpoint_id AND e.enabled
WHERE d.state = 'pending' AND d.next_attempt_at <= now()
UNION ALL
SELECT count(*), min(created_at) FROM {schema}.{event} WHERE NOT fanned_out
"""
DISABLED_SQL = "SELECT count(*) FROM {schema}.{endpoint} WHERE NOT enabled AND disabled_reason = 'failing'"


def _shard_totals(cursor, schemas: list[str], quote) -> tuple[int, dt.datetime | None, int]:
    from .models import Delivery, Endpoint, Event

    delivery, endpoint = Delivery._meta.db_table, Endpoint._meta.db_table
    cursor.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE c.relname = %s AND n.nspname = ANY(%s)", [delivery, schemas])
    present = [row[0] for row in cursor.fetchall()]
    if not present:
        return 0, None, 0
    tables = {"delivery": quote(delivery), "endpoint": quote(endpoint), "event": quote(Event._meta.db_table)}
    backlog = " UNION ALL ".join(BACKLOG_SQL.format(schema=quote(s), **tables) for s in present)
    cursor.execute(f"SELECT coalesce(sum(count), 0), min(min) FROM ({backlog}) AS per_schema")
    due, oldest = cursor.fetchone()
    disabled = " UNION ALL ".join(DISABLED_SQL.format(schema=quote(s), **tables) for s in present)
    cursor.execute(f"SELECT coalesce(sum(count), 0) FROM ({disabled}) AS per_schema")
    return int(due), oldest, int(cursor.fetchone()[0])


def read_backlog():
    from django.db import connections

    from apps.ops import collectors

    now = dt.datetime.now(dt.UTC)
    due, age, disabled = [], [], []
    for alias, schemas in collectors.tenant_schemas().items():
        try:
            with collectors.bounded_cursor(alias) as cursor:
                count_due, oldest, count_disabled = _shard_totals(cursor, schemas, connections[alias].ops.quote_name)
        except DatabaseError as exc:
            logger.warning("webhook backlog reading failed", extra={"shard": alias, "error": str(exc)[:200]})
            continue
        shard = collectors.shard_name(alias)
        due.append(((shard,), count_due))
        age.append(((shard,), max(0.0, (now - oldest).total_seconds()) if oldest else 0.0))
        disabled.append(((shard,), count_disabled))
    yield collectors.gauge("saas_webhook_backlog", "Webhook deliveries due now (enabled endpoints)", ["shard"], due)
    yield collectors.gauge("saas_webhook_oldest_due_age_seconds",
                           "How long the most overdue webhook delivery has been due (0 when none)", ["shard"], age)
    yield collectors.gauge("saas_webhook_endpoints_disabled", "Endpoints disabled for failing, not enabled again",
                           ["shard"], disabled)
