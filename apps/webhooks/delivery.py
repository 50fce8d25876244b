"""A tenant's delivery run: claim due deliveries, send them, record what happened.

One run has its tenant active and works for at most WEBHOOKS_RUN_SECONDS:

1. make the deliveries of the events written since the last run (one per
   enabled endpoint that wants the type: ``fan_out``), then claim up to
   WEBHOOKS_BATCH due deliveries with one statement (``UPDATE
   ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``, a lease in
   ``claimed_until``), oldest due first. A later event of an object whose
   earlier one is undelivered is ``waiting`` and becomes
   pending when that one finishes: one object's events reach an endpoint in
   order, a retrying one holding back the later ones;
2. send them outside any transaction, one thread per destination host (at
   most WEBHOOKS_THREADS), each host's circuit checked first;
3. record every attempt, the deliveries' new states and the endpoints'
   health in one transaction, then claim again.

A run that dies (a SIGKILLed worker) leaves claims that lapse after
WEBHOOKS_CLAIM_SECONDS; its message comes back (late acknowledgement) or the
sweep wakes the tenant, and the deliveries are sent then. Sending is
at-least-once: the webhook-id lets a receiver drop a repeat.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, transaction
from django.utils import timezone

from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias

from . import destinations, health, metrics, signing
from .breaker import HostCircuits
from .models import Attempt, Delivery, Endpoint, Event
from .sending import Outcome, Sender

# Claimable: pending, due, not claimed by a live run, its endpoint enabled;
# oldest due first, along the partial index on (next_attempt_at, id). (A
# later event of an object that has one undelivered is "waiting", not
# pending: it is not scanned at all until its turn.)
CLAIMABLE = """
FROM {delivery} d
WHERE d.state = 'pending' AND d.next_attempt_at <= clock_timestamp()
  AND (d.claimed_until IS NULL OR d.claimed_until < clock_timestamp())
  AND d.endpoint_id IN (SELECT id FROM {endpoint} WHERE enabled)
"""
CLAIM_SQL = f"""
UPDATE {{delivery}} SET claimed_until = clock_timestamp() + make_interval(secs => %s)
WHERE id IN (SELECT d.id {CLAIMABLE} ORDER BY d.next_attempt_at, d.id LIMIT %s FOR UPDATE OF d SKIP LOCKED)
RETURNING id
"""
DUE_SQL = f"SELECT EXISTS (SELECT 1 {CLAIMABLE}) OR EXISTS (SELECT 1 FROM {{event}} WHERE NOT fanned_out)"
# The events written since the last fan-out, in the order of their sequence,
# become one delivery per enabled endpoint that wants the type: "waiting"
# where an earlier event of the same object to that endpoint is undelivered
# (in this batch or from before), else "pending". One run of a tenant at a
# time does it (a transaction-scoped advisory lock on the schema), so two
# runs cannot both find an object free.
FANOUT_LOCK_SQL = "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.webhooks_fanout'))"
FANOUT_SQL = """
WITH fresh AS (
    UPDATE {event} SET fanned_out = true
    WHERE id IN (SELECT id FROM {event} WHERE NOT fanned_out ORDER BY sequence, id LIMIT %s FOR UPDATE SKIP LOCKED)
    RETURNING id, type, object_type || ':' || object_id AS object_key, sequence),
pairs AS (
    SELECT fresh.id, fresh.object_key, fresh.sequence, e.id AS endpoint_id,
           row_number() OVER (PARTITION BY e.id, fresh.object_key ORDER BY fresh.sequence, fresh.id) AS turn
    FROM fresh JOIN {endpoint} e ON e.enabled AND e.event_types && ARRAY['*', fresh.type]::varchar[]),
made AS (
    INSERT INTO {delivery} (event_id, endpoint_id, object_key, sequence, state, attempts, next_attempt_at,
                            last_error, created_at)
    SELECT pairs.id, pairs.endpoint_id, pairs.object_key, pairs.sequence,
           CASE WHEN pairs.turn > 1 OR EXISTS (
                    SELECT 1 FROM {delivery} d WHERE d.state IN ('pending', 'waiting')
                      AND d.endpoint_id = pairs.endpoint_id AND d.object_key = pairs.object_key)
                THEN 'waiting' ELSE 'pending' END,
           0, now(), '', now()
    FROM pairs
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
    RETURNING 1)
SELECT (SELECT count(*) FROM fresh), (SELECT count(*) FROM made)
"""
FANOUT_BATCH = 500
# The next waiting event of each (endpoint, object) whose undelivered one
# just finished (delivered or given up) takes its turn.
RELEASE_SQL = """
UPDATE {delivery} SET state = 'pending', next_attempt_at = clock_timestamp()
WHERE id IN (
    SELECT DISTINCT ON (endpoint_id, object_key) id FROM {delivery}
    WHERE state = 'waiting' AND (endpoint_id, object_key) IN (SELECT unnest(%s::bigint[]), unnest(%s::text[]))
    ORDER BY endpoint_id, object_key, sequence, id)
"""
# Every row a batch's recording will change, locked first and in id order,
# as the endpoint's deletion and the purge lock them: no deadlock between them.
LOCK_SQL = """
SELECT id FROM {delivery}
WHERE id = ANY(%s) OR (state = 'waiting' AND (endpoint_id, object_key) IN (SELECT unnest(%s::bigint[]),
                                                                                  unnest(%s::text[])))
ORDER BY id FOR UPDATE
"""
# Waiting with nothing ahead of it: its predecessor finished in a transaction
# that committed while this one was being written. Rare; the sweep and the
# end of each run release them.
ORPHANS_SQL = """
UPDATE {delivery} SET state = 'pending', next_attempt_at = clock_timestamp()
WHERE id IN (
    SELECT DISTINCT ON (w.endpoint_id, w.object_key) w.id FROM {delivery} w
    WHERE w.state = 'waiting' AND NOT EXISTS (
        SELECT 1 FROM {delivery} p
        WHERE p.state = 'pending' AND p.endpoint_id = w.endpoint_id AND p.object_key = w.object_key)
    ORDER BY w.endpoint_id, w.object_key, w.sequence, w.id)
"""


def _tables(alias: str) -> dict[str, str]:
    quote = connections[alias].ops.quote_name
    return {"delivery": quote(Delivery._meta.db_table), "endpoint": quote(Endpoint._meta.db_table),
            "event": quote(Event._meta.db_table)}


def fan_out(alias: str, limit: int = FANOUT_BATCH) -> int | None:
    """Make the deliveries of up to ``limit`` new events; how many events
    it took, or None when another run of the tenant is doing it."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(FANOUT_LOCK_SQL)
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(FANOUT_SQL.format(**_tables(alias)), [limit])
        return cursor.fetchone()[0]


def claim(alias: str, limit: int) -> list[Delivery]:
    with connections[alias].cursor() as cursor:
        cursor.execute(CLAIM_SQL.format(**_tables(alias)), [settings.WEBHOOKS_CLAIM_SECONDS, limit])
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    return list(Delivery.objects.using(alias).select_related("event", "endpoint").filter(pk__in=ids)
                .order_by("next_attempt_at", "pk"))


def due_now(alias: str) -> bool:
    """A delivery a run could take now, or an event still to fan out."""
    with connections[alias].cursor() as cursor:
        cursor.execute(DUE_SQL.format(**_tables(alias)))
        return cursor.fetchone()[0]


def release_orphans(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute(ORPHANS_SQL.format(**_tables(alias)))
        return cursor.rowcount


def _lock(alias: str, results: list[Result], finished: list[Delivery]) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(LOCK_SQL.format(**_tables(alias)), [[r.delivery.pk for r in results],
                                                          [d.endpoint_id for d in finished],
                                                          [d.object_key for d in finished]])


def _release_next(alias: str, finished: list[Delivery]) -> None:
    if finished:
        with connections[alias].cursor() as cursor:
            cursor.execute(RELEASE_SQL.format(**_tables(alias)),
                           [[d.endpoint_id for d in finished], [d.object_key for d in finished]])


# --- what is sent ----------------------------------------------------------------


def envelope(event: Event, tenant) -> dict:
    from .catalogue import CATALOGUE

    return {"id": event.public_id, "type": event.type,
            "version": event.schema_version or CATALOGUE[event.type].version,
            "timestamp": event.created_at, "tenant": tenant.slug,
            "object": {"type": event.object_type, "id": event.object_id, "sequence": event.sequence},
            "data": event.data}


def body_of(event: Event, tenant) -> bytes:
    """The JSON body; over WEBHOOKS_MAX_PAYLOAD_BYTES, a link to the event replaces its data."""
    content = envelope(event, tenant)
    body = json.dumps(content, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    if len(body) <= settings.WEBHOOKS_MAX_PAYLOAD_BYTES:
        return body
    from apps.tenancy.links import tenant_url

    content.update(data=None, data_url=tenant_url(tenant, f"/api/v1/webhook-events/{event.public_id}"))
    return json.dumps(content, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def endpoint_secrets(endpoint: Endpoint) -> list[str]:
    """Every secret that signs now: the current one, and the previous one
    until its rotation overlap ends."""
    found = [signing.derive(endpoint.secret_seed, endpoint.secret_hash)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_seed and expires and expires > timezone.now():
        try:
            found.append(signing.derive(endpoint.previous_secret_seed, endpoint.previous_secret_hash))
        except signing.SecretUnavailable:
            pass
    return found


# --- sending a batch ---------------------------------------------------------------


CIRCUIT_OPEN = "waiting: the destination's circuit is open"


@dataclass
class Result:
    delivery: Delivery
    started_at: dt.datetime
    outcome: Outcome | None  # None: not tried (its host's circuit is open, or the run's time is up)
    retry_from: float | None = None  # when it may be tried (time.time())
    why: str = ""


class _Batch:
    """The deliveries of one claim, grouped by host, sent on up to WEBHOOKS_THREADS threads."""

    def __init__(self, tenant, deliveries: list[Delivery], stop_at: float | None = None):
        self.tenant = tenant
        # No attempt starts after this (time.monotonic()): the rest go back,
        # due at once, and the next run (queued behind other tenants') sends them.
        self.stop_at = stop_at
        self.bodies: dict = {}
        self.secrets: dict[int, list[str] | Exception] = {}
        self.by_host: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            self.by_host[_host(delivery.endpoint.url)].append(delivery)
        self.circuits = HostCircuits(set(self.by_host))

    def prepare(self) -> None:
        """Bodies and secrets, once per event and endpoint, before any thread starts."""
        for group in self.by_host.values():
            for delivery in group:
                if delivery.event_id not in self.bodies:
                    self.bodies[delivery.event_id] = body_of(delivery.event, self.tenant)
                if delivery.endpoint_id not in self.secrets:
                    try:
                        self.secrets[delivery.endpoint_id] = endpoint_secrets(delivery.endpoint)
                    except signing.SecretUnavailable as exc:
                        self.secrets[delivery.endpoint_id] = exc

    def send(self) -> list[Result]:
        self.prepare()
        groups = list(self.by_host.items())
        threads = min(len(groups), settings.WEBHOOKS_THREADS)
        if threads <= 1:
            results = [self._send_host(host, group) for host, group in groups]
        else:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook-send") as pool:
                results = list(pool.map(lambda item: self._send_host(*item), groups))
        self.circuits.save(set(self.by_host))
        return [result for group in results for result in group]

    def _send_host(self, host: str, group: list[Delivery]) -> list[Result]:
        sender = Sender()
        results = []
        try:
            for delivery in group:
                started_at = timezone.now()
                if self.stop_at is not None and time.monotonic() >= self.stop_at:
                    results.append(Result(delivery, started_at, None, retry_from=time.time()))
                    continue
                closed_until = self.circuits.closed_until(host)
                if closed_until is not None:
                    results.append(Result(delivery, started_at, None, retry_from=closed_until, why=CIRCUIT_OPEN))
                    continue
                outcome = self._send_one(sender, delivery)
                self.circuits.record(host, outcome.succeeded)
                results.append(Result(delivery, started_at, outcome))
        finally:
            sender.close()
        return results

    def _send_one(self, sender: Sender, delivery: Delivery) -> Outcome:
        secrets = self.secrets[delivery.endpoint_id]
        if isinstance(secrets, Exception):
            return Outcome(None, str(secrets), "", 0.0)
        body = self.bodies[delivery.event_id]
        headers = signing.headers(secrets, delivery.event.public_id, int(time.time()), body)
        return sender.post(delivery.endpoint.url, body, headers)


def _host(url: str) -> str:
    try:
        return destinations.parse(url).host
    except destinations.DestinationRefused:
        return ""


# --- recording --------------------------------------------------------------------


def backoff(attempts: int) -> float:
    """Seconds before retry number ``attempts``: doubling from
    WEBHOOKS_RETRY_BASE_SECONDS up to WEBHOOKS_RETRY_MAX_SECONDS, with
    jitter (a random half of it), so retries of one outage spread out."""
    delay = min(settings.WEBHOOKS_RETRY_MAX_SECONDS, settings.WEBHOOKS_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _apply(result: Result, now: dt.datetime) -> Attempt | None:
    """Set the delivery's new state from one result; the attempt to store, if it was tried."""
    delivery, outcome = result.delivery, result.outcome
    delivery.claimed_until = None
    if outcome is None:  # put off, not an attempt
        wait = max(0.0, (result.retry_from or time.time()) - time.time())
        if result.why:  # behind an open circuit: spread the probes out
            wait += random.uniform(0, 5)
            delivery.last_error = result.why
        delivery.next_attempt_at = now + dt.timedelta(seconds=wait)
        return None
    delivery.attempts += 1
    delivery.first_attempt_at = delivery.first_attempt_at or result.started_at
    delivery.last_attempt_at = result.started_at
    delivery.last_status = outcome.status
    delivery.last_error = outcome.error[:300]
    if outcome.succeeded:
        delivery.state, delivery.delivered_at = Delivery.State.DELIVERED, now
    else:
        deadline = delivery.first_attempt_at + dt.timedelta(seconds=settings.WEBHOOKS_RETRY_FOR_SECONDS)
        if now >= deadline:
            delivery.state = Delivery.State.FAILED
        else:
            delivery.next_attempt_at = min(deadline, now + dt.timedelta(seconds=backoff(delivery.attempts)))
    return Attempt(delivery=delivery, number=delivery.attempts, started_at=result.started_at,
                   duration_ms=round(outcome.seconds * 1000), status_code=outcome.status,
                   succeeded=outcome.succeeded, error=outcome.error[:300],
                   response_excerpt=outcome.excerpt[:settings.WEBHOOKS_RESPONSE_KEEP_BYTES])


# One statement for a batch's new states (Django's bulk_update builds a CASE
# per field and row, which cost more than the batch's HTTP round trips).
UPDATE_SQL = """
UPDATE {delivery} AS d SET state = v.state, attempts = v.attempts, next_attempt_at = v.next_attempt_at,
    claimed_until = NULL, first_attempt_at = v.first_attempt_at, last_attempt_at = v.last_attempt_at,
    delivered_at = v.delivered_at, last_status = v.last_status, last_error = v.last_error
FROM (VALUES {rows}) AS v(id, state, attempts, next_attempt_at, first_attempt_at, last_attempt_at, delivered_at,
                          last_status, last_error)
WHERE d.id = v.id
RETURNING d.id
"""
ROW = "(%s::bigint, %s, %s::integer, %s::timestamptz, %s::timestamptz, %s::timestamptz, %s::timestamptz, %s::smallint, %s)"


def _save_states(alias: str, deliveries: list[Delivery]) -> set[int]:
    """Write the new states; returns the ids still there (an endpoint deleted
    meanwhile took its deliveries with it)."""
    params = [value for d in deliveries for value in (
        d.pk, d.state, d.attempts, d.next_attempt_at, d.first_attempt_at, d.last_attempt_at, d.delivered_at,
        d.last_status, d.last_error)]
    with connections[alias].cursor() as cursor:
        cursor.execute(UPDATE_SQL.format(rows=", ".join([ROW] * len(deliveries)), **_tables(alias)), params)
        return {row[0] for row in cursor.fetchall()}


def record(alias: str, results: list[Result]) -> None:
    now = timezone.now()
    attempts = [attempt for attempt in (_apply(result, now) for result in results) if attempt is not None]
    finished = [r.delivery for r in results if r.delivery.state != Delivery.State.PENDING]
    with transaction.atomic(using=alias):
        _lock(alias, results, finished)
        kept = _save_states(alias, [r.delivery for r in results])
        Attempt.objects.using(alias).bulk_create([a for a in attempts if a.delivery_id in kept])
        _release_next(alias, finished)
        health.endpoints_after(alias, [r for r in results if r.outcome is not None], now)
    metrics.count(results)


# --- a run ------------------------------------------------------------------------


def run(*, budget: float | None = None) -> bool:
    """Deliver the active tenant's due deliveries for up to ``budget``
    seconds (WEBHOOKS_RUN_SECONDS); True when some are still due."""
    tenant = require_active_tenant()
    alias = tenant_write_alias(tenant)
    budget = settings.WEBHOOKS_RUN_SECONDS if budget is None else budget
    stop_at = time.monotonic() + budget
    while time.monotonic() < stop_at:
        fanned = fan_out(alias)
        deliveries = claim(alias, settings.WEBHOOKS_BATCH)
        if deliveries:
            record(alias, _Batch(tenant, deliveries, stop_at).send())
        elif not fanned:  # nothing new (or another run fans out): done for now
            return bool(release_orphans(alias)) and due_now(alias)
    return due_now(alias)
