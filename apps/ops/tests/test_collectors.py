"""Scrape-time readings of shared state, against the real broker and databases."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.utils import timezone

from apps.jobs.models import DeadLetter, OutboxMessage
from apps.ops import collectors
from tests.redis_faults import counting_connects
from tests.workers import live_broker

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_readings(settings):
    settings.METRICS_CACHE_SECONDS = 0  # every collect() reads afresh


def samples(collector) -> dict[tuple, float]:
    """{(metric name, (label values...)): value} of one collector's families."""
    found = {}
    for family in collector.collect():
        for sample in family.samples:
            found[(sample.name, tuple(sample.labels.values()))] = sample.value
    return found


def collector(name: str) -> collectors.CachedCollector:
    return next(c for c in collectors.PLATFORM_COLLECTORS if c.name == name)


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
@pytest.mark.live
def test_queue_depth_and_age_of_the_oldest_message(kind):
    with live_broker(kind) as broker:
        from config.celery_app import app

        app.send_task("jobs.ping", args=[0], queue="exports")
        time.sleep(1.2)
        app.send_task("jobs.ping", args=[0], queue="exports")
        found = samples(collector("queues"))
        assert found[("saas_metrics_collector_up", ("queues",))] == 1
        assert found[("saas_queue_messages", ("exports",))] == 2
        assert found[("saas_queue_messages", ("emails",))] == 0
        if broker["kind"] == "redis":
            # Published 1.2 s before the newer one: the oldest's age, not the newest's.
            assert 1.2 <= found[("saas_queue_oldest_message_age_seconds", ("exports",))] < 30
            assert found[("saas_queue_oldest_message_age_seconds", ("emails",))] == 0
        else:
            assert found[("saas_queue_consumers", ("exports",))] == 0


@pytest.mark.live
def test_a_dead_broker_is_reported_quickly_and_hides_nothing_else():
    with live_broker("redis") as broker:
        broker["server"].stop()
        with counting_connects() as tried:
            found = samples(collector("queues"))
        # One refused connect, no retries with back-off: a scrape is not held up by a dead broker.
        assert tried == [("127.0.0.1", broker["server"].port)]
        assert found[("saas_metrics_collector_up", ("queues",))] == 0
        assert not any(name == "saas_queue_messages" for name, _ in found)
        # The other sources still report.
        assert samples(collector("shards"))[("saas_metrics_collector_up", ("shards",))] == 1


def test_dead_letters_by_task(tenants):
    now = timezone.now()
    for status in (DeadLetter.Status.DEAD, DeadLetter.Status.DEAD, DeadLetter.Status.REPLAYED):
        DeadLetter.objects.create(task_name="metrics.test_task", task_id="t", queue="emails", exception="x",
                                  first_failed_at=now, last_failed_at=now, status=status)
    found = samples(collector("dead_letters"))
    assert found[("saas_dead_letters", ("metrics.test_task", "emails"))] == 2  # replayed ones are handled


def test_outbox_backlog_and_age_per_plane(tenants):
    from apps.outbox.models import TenantOutboxMessage
    from apps.tenancy.activation import tenant_activated
    from apps.tenancy.routers import tenant_write_alias

    row = OutboxMessage.objects.create(task_name="jobs.ping", args=[0])
    OutboxMessage.objects.filter(pk=row.pk).update(created_at=timezone.now() - dt.timedelta(minutes=10))
    beta = tenants["beta"]
    with tenant_activated(beta):
        alias = tenant_write_alias(beta)
        old = TenantOutboxMessage.objects.using(alias).create(task_name="jobs.ping", args=[0])
        TenantOutboxMessage.objects.using(alias).filter(pk=old.pk).update(
            created_at=timezone.now() - dt.timedelta(minutes=20))
    found = samples(collector("outboxes"))
    assert found[("saas_outbox_unsent", ("control", ""))] >= 1
    assert found[("saas_outbox_oldest_unsent_age_seconds", ("control", ""))] >= 600
    shard = beta.shard.name
    assert found[("saas_outbox_unsent", ("tenant", shard))] >= 1
    assert found[("saas_outbox_oldest_unsent_age_seconds", ("tenant", shard))] >= 1200
    assert found[("saas_outbox_schemas_read", (shard,))] >= 1


def test_shards_and_partition_horizon(tenants, settings):
    found = samples(collector("shards"))
    for tenant in tenants.values():
        shard = tenant.shard.name
        assert found[("saas_shard_up", (shard,))] == 1
        assert found[("saas_shard_tenants", (shard,))] >= 1
        assert found[("saas_shard_size_bytes", (shard,))] > 1_000_000
    for (name, labels), value in found.items():
        if name == "saas_replica_lag_bytes":
            assert value >= 0 and found[("saas_replica_up", labels)] == 1
    horizon = samples(collector("partitions"))
    for table in settings.PARTITIONED_TABLES:
        # Tenants are provisioned with PARTITION_MONTHS_AHEAD months ahead.
        assert horizon[("saas_partition_months_ahead", ("main", table))] >= 1


def test_a_missing_month_shows_in_the_horizon(tenants, settings):
    from django.db import connections

    from apps.partitions import partitions

    alpha = tenants["alpha"]
    table = settings.PARTITIONED_TABLES[0]
    today = timezone.now().date()
    with connections[alpha.shard.alias].cursor() as cursor:
        for offset in range(1, settings.PARTITION_MONTHS_AHEAD + 2):
            name = partitions.partition_name(table, partitions.month_start(today, offset))
            cursor.execute(f'DROP TABLE IF EXISTS "{alpha.schema_name}"."{name}"')  # rolled back after the test
    horizon = samples(collector("partitions"))
    assert horizon[("saas_partition_months_ahead", (alpha.shard.name, table))] == 0


def test_web_metrics_include_the_readings(client, settings):
    settings.OPS_TOKEN = "ops-secret"
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ops-secret").content.decode()
    for name in ("saas_shard_up", "saas_dead_letters", "saas_metrics_collector_up", "saas_partition_months_ahead"):
        assert re.search(rf"^# TYPE {name} gauge$", body, re.MULTILINE), name


def test_open_moves_and_the_last_hour_longest_freeze(tenants):
    from apps.tenancy.models import Move, Shard

    alpha, beta = tenants["alpha"], tenants["beta"]
    other = Shard.objects.exclude(pk=alpha.shard_id).first()
    stale = timezone.now() - dt.timedelta(minutes=3)
    Move.objects.create(tenant=alpha, source=alpha.shard, target=other, schema_name=alpha.schema_name,
                        retired_schema=f"{alpha.schema_name}_old", phase="copy", path="locked", heartbeat_at=stale)
    Move.objects.create(tenant=beta, source=beta.shard, target=other, schema_name=beta.schema_name,
                        retired_schema=f"{beta.schema_name}_old", phase="done", path="logical",
                        freeze_seconds=0.42, finished_at=timezone.now())
    found = samples(collector("moves"))
    assert found[("saas_moves_in_progress", ("copy", "locked"))] == 1
    labels = (alpha.slug, alpha.shard.name, other.name, "copy")
    assert found[("saas_move_heartbeat_age_seconds", labels)] >= 180
    assert found[("saas_move_age_seconds", labels)] >= 0
    assert found[("saas_move_freeze_seconds_max", ("logical",))] == pytest.approx(0.42)
    # Finished moves are not "in progress" and have no per-tenant series.
    assert not any(name == "saas_move_age_seconds" and values[0] == beta.slug for name, values in found)
