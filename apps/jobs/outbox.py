"""Transactional outbox: a task is written as a row in the same transaction as
the change that causes it, sent after commit, and swept later if sending
failed (a broker down at commit time loses nothing; a rollback sends nothing).

Publishing never holds a request thread or a database transaction:

* on commit, the row's id is handed to this process's relay thread through a
  bounded queue (a put that never waits; a full queue leaves the row to the
  sweep), so a request does not wait for the broker at all;
* the relay claims rows with one short statement (``UPDATE ... WHERE id IN
  (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``, a lease in
  ``claimed_until``), publishes them outside any transaction over a broker
  connection of its own (short timeouts, no retries), then marks them sent;
* after a failed publish the relay thread leaves new rows to the sweep for
  ``OUTBOX_RELAY_PAUSE_SECONDS`` instead of waiting on a dead broker per row.

Sending is at-least-once (a relay that dies between publish and mark leaves a
claim that lapses, and the sweep sends the row again); the row id is the task
id and the tasks are idempotent, so effects still happen once.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import F
from django.utils import timezone

from apps.observability import tracing
from apps.observability.context import request_id_var, user_var

from .redaction import redacted_repr

logger = logging.getLogger(__name__)

CLAIM_SQL = """
UPDATE {table} SET claimed_until = clock_timestamp() + make_interval(secs => %s)
WHERE id IN (
    SELECT id FROM {table}
    WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until < clock_timestamp()) {where}
    ORDER BY created_at
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
RETURNING *
"""
PURGE_SQL = "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE sent_at < %s LIMIT %s)"
# The relay thread closes its database connections after this long without work.
IDLE_CLOSE_SECONDS = 2.0


# --- publishing --------------------------------------------------------------


class _BrokerLink(threading.local):
    """Each thread that publishes (the relay thread, a worker's sweep) keeps
    one broker connection for the outbox, apart from Celery's shared pool, so
    its timeouts and retry policy are the outbox's own."""

    connection = None
    producer = None
    broker_url = None


_link = _BrokerLink()


def _transport_options(timeout: float) -> dict:
    from celery import current_app as app  # the project app (config loads it with Django)

    options = dict(app.conf.broker_transport_options or {})
    options["max_retries"] = 0  # kombu's connection retries: the sweep is the retry
    if app.conf.broker_url.startswith(("amqp", "pyamqp")):
        # Handshake, frames and the publisher confirm each wait at most `timeout`.
        options.update(read_timeout=timeout, write_timeout=timeout)
    else:
        options.update(socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False)
    return options


def _producer():
    from celery import current_app as app  # the project app (config loads it with Django)

    if _link.producer is not None and _link.broker_url != app.conf.broker_url:
        _drop_link()  # the app was pointed at another broker
    if _link.producer is None:
        timeout = settings.OUTBOX_PUBLISH_TIMEOUT_SECONDS
        _link.connection = app.connection_for_write(connect_timeout=timeout,
                                                    transport_options=_transport_options(timeout))
        _link.producer = app.amqp.Producer(_link.connection)
        _link.broker_url = app.conf.broker_url
    return _link.producer


def _drop_link() -> None:
    connection, _link.connection, _link.producer = _link.connection, None, None
    if connection is not None:
        try:
            connection.collect()  # close without talking to a broker that may not answer
        except Exception:
            pass


def publish(message) -> None:
    """Send one outbox row to the broker, bounded by OUTBOX_PUBLISH_TIMEOUT_SECONDS.

    A connection kept from earlier sends may have gone stale (the broker
    restarted): that case gets one fresh connection; anything else raises.
    """
    from celery import current_app as app  # the project app (config loads it with Django)

    for fresh in (_link.producer is None, True):
        try:
            # Names only on the message's argsrepr/kwargsrepr, which worker
            # logs, events, `celery inspect` and Flower show (as apply_async does).
            argsrepr, kwargsrepr = redacted_repr(message.args, message.kwargs)
            app.send_task(message.task_name, args=message.args, kwargs=message.kwargs, headers=message.headers,
                          task_id=str(message.id), retry=False, producer=_producer(), argsrepr=argsrepr,
                          kwargsrepr=kwargsrepr)
            return
        except Exception:
            _drop_link()
            if fresh:
                raise


# --- claim, publish, mark -------------------------------------------------


def claim(model, alias: str, ids=None, *, older_than: dt.timedelta | None = None, limit: int = 500) -> list:
    """Take unsent, unclaimed rows (these ``ids``, or all older than
    ``older_than``) for OUTBOX_CLAIM_SECONDS, in one statement: the row
    locks last only as long as that statement."""
    where, params = "", []
    if ids is not None:
        where += " AND id = ANY(%s)"
        params.append(list(ids))
    if older_than is not None:
        where += " AND created_at < %s"
        params.append(timezone.now() - older_than)
    sql = CLAIM_SQL.format(table=connections[alias].ops.quote_name(model._meta.db_table), where=where)
    rows = list(model.objects.using(alias).raw(sql, [settings.OUTBOX_CLAIM_SECONDS, *params, limit]))
    return sorted(rows, key=lambda row: row.created_at)


def relay(model, alias: str, ids=None, *, older_than: dt.timedelta | None = None, limit: int = 500) -> int:
    """Send unsent rows (these ``ids``, or all older than ``older_than``);
    returns how many were sent. A broker failure is logged, not raised:
    the rows wait for the sweep."""
    return _relay(model, alias, ids, older_than=older_than, limit=limit)[0]


def _relay(model, alias: str, ids=None, *, older_than=None, limit: int = 500) -> tuple[int, bool]:
    """(rows sent, whether publishing failed). Stops at the first failure: the
    failed row records the error, the rest are released at once."""
    rows = claim(model, alias, ids, older_than=older_than, limit=limit)
    manager = model.objects.using(alias)
    sent = []
    try:
        for message in rows:
            with tracing.outbox_relay_span(message):  # in the trace of the change that wrote the row
                publish(message)  # outside any transaction: no row is locked while the broker is slow
            sent.append(message.pk)
    except Exception as exc:  # broker down: keep the rows for the sweep
        failed = rows[len(sent)]
        error = f"{type(exc).__name__}: {exc}"[:1000]
        manager.filter(pk=failed.pk).update(attempts=F("attempts") + 1, last_error=error, claimed_until=None)
        manager.filter(pk__in=[row.pk for row in rows[len(sent) + 1:]]).update(claimed_until=None)
        logger.warning("outbox send failed; the sweep will retry",
                       extra={"task": failed.task_name, "error": error[:200]})
    finally:
        if sent:
            manager.filter(pk__in=sent).update(sent_at=timezone.now(), claimed_until=None)
    return len(sent), len(sent) < len(rows)


# --- the per-process relay thread --------------------------------------------


@dataclass(frozen=True)
class _Job:
    model: type
    alias: str
    ids: tuple
    tenant: object = None


class RelayThread:
    """Publishes committed rows off the request thread.

    One daemon thread per process, started on first use and again in a
    forked child (a thread does not survive ``fork``), fed by a bounded queue.
    Rows it cannot send now (queue full, broker down, process exiting) stay
    unsent for the sweep.
    """

    def __init__(self):
        self._pid: int | None = None
        self._queue: queue.Queue | None = None
        self._lock = threading.Lock()
        self.paused_until = 0.0

    def submit(self, job: _Job) -> bool:
        if self._pid != os.getpid():
            self._start()
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            logger.warning("outbox relay queue full; the sweep will send", extra={"task": job.model.__name__})
            return False

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queued rows to be handled."""
        deadline = time.monotonic() + timeout
        while self._pid == os.getpid() and self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue(maxsize=settings.OUTBOX_RELAY_QUEUE_SIZE)
            self.paused_until = 0.0
            threading.Thread(target=self._run, args=(self._queue,), name="outbox-relay", daemon=True).start()
            self._pid = os.getpid()

    def _run(self, jobs: queue.Queue) -> None:
        while True:
            try:
                batch = [jobs.get(timeout=IDLE_CLOSE_SECONDS)]
            except queue.Empty:
                connections.close_all()  # idle: hold no database sessions (this thread's only)
                continue
            while len(batch) < 100:  # rows committed meanwhile go out in one claim per outbox
                try:
                    batch.append(jobs.get_nowait())
                except queue.Empty:
                    break
            try:
                if time.monotonic() >= self.paused_until:
                    close_old_connections()  # this thread's own connections, as between requests
                    for job in _coalesce(batch):
                        if not _run_job(job):
                            self.paused_until = time.monotonic() + settings.OUTBOX_RELAY_PAUSE_SECONDS
                            break
            except Exception:  # a database hiccup: the rows stay unsent for the sweep
                logger.exception("outbox relay failed; the sweep will send")
            finally:
                for _ in batch:
                    jobs.task_done()


def _coalesce(batch: list[_Job]) -> list[_Job]:
    grouped: dict[tuple, _Job] = {}
    for job in batch:
        key = (job.model, job.alias, getattr(job.tenant, "pk", None))
        known = grouped.get(key)
        grouped[key] = job if known is None else _Job(job.model, job.alias, known.ids + job.ids, job.tenant)
    return list(grouped.values())


def _run_job(job: _Job) -> bool:
    """Relay one job (with its tenant active); False when publishing failed."""
    limit = max(500, len(job.ids))  # coalesced jobs may name more rows than one claim's default
    if job.tenant is None:
        return not _relay(job.model, job.alias, job.ids, limit=limit)[1]
    from apps.tenancy.activation import tenant_activated

    with tenant_activated(job.tenant):
        return not _relay(job.model, job.alias, job.ids, limit=limit)[1]


relay_thread = RelayThread()
# A process exiting (a management command, a gunicorn worker recycled) hands
# what it committed to the broker if it can within a moment; the rest is swept.
atexit.register(lambda: relay_thread.flush(2.0))


def _forget_in_child() -> None:
    """A forked child shares none of its parent's broker sockets or locks."""
    _link.__dict__.clear()
    relay_thread._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def enqueue(model, alias: str, task, *, args=(), kwargs=None, headers=None, tenant=None):
    """Write an outbox row on ``alias`` (inside the caller's transaction) and
    send it once that transaction commits. A tenant outbox row is relayed
    with its ``tenant`` active: the relay runs after the request's tenant was
    deactivated, on another thread."""
    check = getattr(task, "check_arguments", None)
    if check is not None:
        check(list(args), dict(kwargs or {}))  # refused here, in the sender's transaction
    all_headers = {"request_id": request_id_var.get(), "user_id": user_var.get(), **(headers or {})}
    if tracing.ENABLED:
        tracing.inject(all_headers)  # the relay publishes in this trace, later and on another thread
    message = model.objects.using(alias).create(
        task_name=task.name, args=list(args), kwargs=dict(kwargs or {}), headers=all_headers
    )
    _relay_after_commit(model, alias, [message.pk], tenant)
    return message


# Rows per relay job from enqueue_many: one claim statement each.
RELAY_CHUNK = 500


def enqueue_many(model, alias: str, items, *, tenant=None) -> list:
    """Write one outbox row per ``(task, args, kwargs, headers)`` of
    ``items`` in one INSERT (inside the caller's transaction), sent once it
    commits, in claims of RELAY_CHUNK rows. For fan-outs (a batch's jobs)."""
    base = {"request_id": request_id_var.get(), "user_id": user_var.get()}
    if tracing.ENABLED:
        tracing.inject(base)
    rows = []
    for task, args, kwargs, headers in items:
        check = getattr(task, "check_arguments", None)
        if check is not None:
            check(list(args), dict(kwargs or {}))
        rows.append(model(task_name=task.name, args=list(args), kwargs=dict(kwargs or {}),
                          headers={**base, **(headers or {})}))
    model.objects.using(alias).bulk_create(rows, batch_size=1000)
    ids = [row.pk for row in rows]
    for start in range(0, len(ids), RELAY_CHUNK):
        _relay_after_commit(model, alias, ids[start:start + RELAY_CHUNK], tenant)
    return rows


def _relay_after_commit(model, alias: str, ids: list, tenant) -> None:
    job = _Job(model, alias, tuple(ids), tenant)

    def after_commit() -> None:
        if connections[alias].in_atomic_block:
            # Committed only as far as an enclosing transaction that is still
            # open (tests capture on-commit callbacks so): no other connection
            # can see the row yet, so it is relayed on this one.
            _run_job(job)
        else:
            relay_thread.submit(job)

    transaction.on_commit(after_commit, using=alias)


def sweep_delay() -> dt.timedelta:
    return dt.timedelta(seconds=settings.OUTBOX_SWEEP_AFTER_SECONDS)


def retention() -> dt.timedelta:
    return dt.timedelta(seconds=settings.OUTBOX_RETENTION_SECONDS)


def purge_sent(model, alias: str, *, older_than: dt.timedelta, batch: int) -> int:
    """Delete rows sent more than ``older_than`` ago, ``batch`` rows per
    statement (short locks, bounded WAL per statement). Unsent rows stay."""
    connection = connections[alias]
    table = connection.ops.quote_name(model._meta.db_table)
    cutoff = timezone.now() - older_than
    deleted = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(PURGE_SQL.format(table=table), [cutoff, batch])
            count = cursor.rowcount
        deleted += count
        if count < batch:
            return deleted
