"""Job records: a row per task in ``jobs_job`` (control plane), kept up to
date from Celery's signals, written off the publish path.

Why this way. A publish must stay within 1.5x of a bare broker publish
(docs/performance), and a database write is several times a publish. So no
process writes a record where the event happens: each event (published,
started, finished, retried, ...) is appended to an in-process buffer (a
deque append, under a microsecond), and one flusher thread per process
(``apps.caching.flushers.Flusher``) writes what gathered every
JOB_RECORD_FLUSH_SECONDS in one ``INSERT ... ON CONFLICT DO UPDATE``
statement. Workers record their states the same way, from task_prerun and
task_postrun, so a task costs its worker no round trip either. Arguments
are redacted and encoded by the flusher, not by the publisher.

One task's events come from several processes (the web publishes, a worker
runs, another worker runs the retry) and reach the table in any order.
Each event carries ``seq`` = run, attempt, step: a row takes an event's
state only if its seq is not lower than the row's, so a late "queued" never
overwrites "running", whatever order the flushers write in. Counters
(starts) add up, and fields that come once (arguments, tenant) keep the
first value seen.

What this costs: a state is visible up to JOB_RECORD_FLUSH_SECONDS late, and
a process killed with SIGKILL loses the events of its last interval (a
clean exit flushes). The records describe the work; they never decide
anything (batches count completions in a transaction of their own,
apps/jobs/batches.py).
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import os
import threading
import time
from collections import deque

from celery import signals
from django.conf import settings
from django.db import connections, router

from apps.caching.flushers import Flusher

from .redaction import redacted

logger = logging.getLogger(__name__)

# seq = run * RUN + attempt * 10 + step: a retry's run (``job_run`` header)
# comes after every attempt of the run before it, an attempt after the one
# before, and within an attempt the steps in this order.
RUN = 1_000_000
STEPS = {"queued": 0, "scheduled": 0, "retrying-published": 0, "running": 1, "parked": 1, "retrying": 2,
         "succeeded": 3, "failed": 3, "skipped": 3, "dead": 4, "discarded": 5}
HISTORY_LIMIT = 40
ARGUMENTS_LIMIT = 4000
STATEMENT_ROWS = 1000
TAKE_LIMIT = 20_000

UPSERT_SQL = """
INSERT INTO jobs_job AS j (task_id, task_name, queue, tenant_id, tenant_slug, state, seq, attempts, eta, created_at,
    started_at, finished_at, runtime, worker, arguments, error, history, batch_id, dead_letter_id, updated_at)
SELECT r.task_id, r.task_name, r.queue, r.tenant_id, r.tenant_slug, r.state, r.seq, r.attempts, r.eta, r.created_at,
    r.started_at, r.finished_at, r.runtime, r.worker, r.arguments, r.error, r.history, r.batch_id, r.dead_letter_id,
    now()
FROM jsonb_to_recordset(%s::jsonb) AS r(task_id text, task_name text, queue text, tenant_id bigint,
    tenant_slug text, state text, seq bigint, attempts integer, eta timestamptz, created_at timestamptz,
    started_at timestamptz, finished_at timestamptz, runtime double precision, worker text, arguments text,
    error text, history jsonb, batch_id uuid, dead_letter_id bigint)
ORDER BY r.task_id
ON CONFLICT (task_id) DO UPDATE SET
    queue = CASE WHEN j.queue = '' THEN EXCLUDED.queue ELSE j.queue END,
    tenant_id = COALESCE(j.tenant_id, EXCLUDED.tenant_id),
    tenant_slug = CASE WHEN j.tenant_slug = '' THEN EXCLUDED.tenant_slug ELSE j.tenant_slug END,
    arguments = CASE WHEN j.arguments = '' THEN EXCLUDED.arguments ELSE j.arguments END,
    batch_id = COALESCE(j.batch_id, EXCLUDED.batch_id),
    state = CASE WHEN EXCLUDED.seq >= j.seq THEN EXCLUDED.state ELSE j.state END,
    eta = CASE WHEN EXCLUDED.seq >= j.seq THEN EXCLUDED.eta ELSE j.eta END,
    finished_at = CASE WHEN EXCLUDED.seq >= j.seq THEN EXCLUDED.finished_at ELSE j.finished_at END,
    runtime = CASE WHEN EXCLUDED.seq >= j.seq THEN EXCLUDED.runtime ELSE j.runtime END,
    seq = GREATEST(j.seq, EXCLUDED.seq),
    attempts = j.attempts + EXCLUDED.attempts,
    created_at = LEAST(j.created_at, EXCLUDED.created_at),
    started_at = GREATEST(j.started_at, EXCLUDED.started_at),
    worker = CASE WHEN EXCLUDED.worker = '' THEN j.worker ELSE EXCLUDED.worker END,
    error = CASE WHEN EXCLUDED.error = '' THEN j.error ELSE EXCLUDED.error END,
    dead_letter_id = COALESCE(EXCLUDED.dead_letter_id, j.dead_letter_id),
    history = CASE WHEN jsonb_array_length(j.history) < %s THEN j.history || EXCLUDED.history ELSE j.history END,
    updated_at = now()
"""
# ORDER BY task_id: concurrent flushers lock shared rows in one order (no deadlock).


def seq_of(run: int, attempt: int, state: str) -> int:
    return int(run) * RUN + min(max(int(attempt), 0), RUN // 10 - 1) * 10 + STEPS[state]


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


# --- the buffer --------------------------------------------------------------


class _Buffer:
    """Events of this process, waiting for the flusher thread."""

    def __init__(self):
        self.events: deque = deque()
        self.dropped = 0
        self.carry: dict[str, dict] = {}  # records a failed write keeps for the next round
        self.lock = threading.Lock()  # one flush at a time (the thread, or a caller flushing now)
        self.flusher = Flusher("job-records", lambda: flush(), lambda: settings.JOB_RECORD_FLUSH_SECONDS)

    def add(self, event: tuple) -> None:
        if len(self.events) >= settings.JOB_RECORD_BUFFER_SIZE:
            self.dropped += 1
            return
        self.events.append(event)
        self.flusher.ensure_started()

    def take(self) -> list[tuple]:
        taken = []
        pop = self.events.popleft
        try:
            while len(taken) < TAKE_LIMIT:
                taken.append(pop())
        except IndexError:
            pass
        return taken


_buffer = _Buffer()


def _forget_in_child() -> None:
    """A forked child (a pool process, a gunicorn worker) starts empty: its
    parent writes what it gathered, and the parent's flusher may have held
    the lock at the fork."""
    _buffer.events = deque()
    _buffer.carry = {}
    _buffer.dropped = 0
    _buffer.lock = threading.Lock()
    _started.clear()


os.register_at_fork(after_in_child=_forget_in_child)


# --- producing events (signal receivers: as little as possible here) ----------


def record_published(body=None, routing_key=None, headers=None, **kwargs) -> None:
    """after_task_publish, on every publish path (apply_async, the outbox
    relay, beat, retries, replays): keep references; the flusher reads them."""
    if headers is not None and settings.JOB_RECORDS_ENABLED:
        _buffer.add(("published", time.time(), headers, body, routing_key))


def _header(request, name: str):
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


def _worker_event(task, state: str, **fields) -> dict:
    request = task.request
    delivery = getattr(request, "delivery_info", None) or {}
    attempt = (request.retries or 0) + 1
    return {"task_id": request.id, "task_name": task.name, "queue": delivery.get("routing_key") or "",
            "tenant_id": _header(request, "tenant_id"), "tenant_slug": _header(request, "tenant_slug") or "",
            "batch_id": _header(request, "batch_id"), "run": _header(request, "job_run") or 0, "attempt": attempt,
            "state": state, "at": time.time(), "worker": request.hostname or "", **fields}


_started: dict[str, float] = {}


def record_started(task_id=None, task=None, args=None, kwargs=None, **extra) -> None:
    """task_prerun, in the process that runs the task."""
    if not settings.JOB_RECORDS_ENABLED or not task_id or getattr(task.request, "called_directly", True):
        return
    _started[task_id] = time.monotonic()
    _buffer.add(("worker", _worker_event(task, "running", args=args, kwargs=kwargs, starts=1)))


def record_finished(task_id=None, task=None, retval=None, state=None, **extra) -> None:
    """task_postrun: the attempt's outcome (PlatformTask leaves notes on the
    request: a dead letter's id, a duplicate's holder)."""
    started = _started.pop(task_id, None)
    if not settings.JOB_RECORDS_ENABLED or not task_id or getattr(task.request, "called_directly", True):
        return
    outcome, error = _outcome(task.request, state, retval)
    if outcome is None:
        return
    runtime = None if started is None or outcome in ("parked", "skipped") else time.monotonic() - started
    event = _worker_event(task, outcome, error=error, runtime=runtime,
                          dead_letter_id=getattr(task.request, "job_dead_letter_id", None))
    if outcome == "retrying":
        when = getattr(retval, "when", None)
        event["eta"] = when.timestamp() if isinstance(when, dt.datetime) else None
    _buffer.add(("worker", event))


def _error_text(exc) -> str:
    return "" if exc is None else f"{type(exc).__name__}: {exc}"[:2000]


def _outcome(request, state: str | None, retval) -> tuple[str | None, str]:
    if state == "SUCCESS":
        return "succeeded", ""
    if state == "RETRY":
        return "retrying", _error_text(getattr(retval, "exc", None) or retval)
    if state == "FAILURE":
        return ("dead" if getattr(request, "job_dead_letter_id", None) else "failed"), _error_text(retval)
    if state == "IGNORED":
        note = getattr(request, "job_skipped", None)
        # Not a duplicate: parked by fairness, to run again when a slot frees.
        return ("skipped", note) if note else ("parked", "")
    if state == "REJECTED":
        return "failed", _error_text(retval) or "rejected"
    return None, ""


# --- turning events into records ------------------------------------------------


def _published_record(at: float, headers: dict, body, routing_key: str | None) -> dict | None:
    task_id, name = headers.get("id"), headers.get("task")
    if not task_id or not name:
        return None
    retries = int(headers.get("retries") or 0)
    eta = _eta(headers.get("eta"))
    state = "retrying" if retries else ("scheduled" if eta is not None and eta > at else "queued")
    step = "retrying-published" if retries else state
    args, kwargs = _body_arguments(body)
    return _record(task_id=task_id, task_name=name, queue=routing_key or "", tenant_id=headers.get("tenant_id"),
                   tenant_slug=headers.get("tenant_slug") or "", batch_id=headers.get("batch_id"), state=state,
                   seq=seq_of(headers.get("job_run") or 0, retries + 1, step), at=at, eta=eta,
                   arguments=_arguments(args, kwargs), history={"t": _iso(at), "s": state, "n": retries + 1})


def _worker_record(event: dict) -> dict:
    state, at = event["state"], event["at"]
    shown = "queued" if state == "parked" else state
    finished = state in ("succeeded", "failed", "dead", "skipped")
    entry = {"t": _iso(at), "s": shown, "n": event["attempt"], "w": event["worker"]}
    if event.get("error"):
        entry["e"] = event["error"][:300]
    return _record(
        task_id=event["task_id"], task_name=event["task_name"], queue=event["queue"], tenant_id=event["tenant_id"],
        tenant_slug=event["tenant_slug"], batch_id=event["batch_id"], state=shown,
        seq=seq_of(event["run"], event["attempt"], state), at=at, eta=event.get("eta"),
        arguments=_arguments(event["args"], event["kwargs"]) if "args" in event else "",
        started_at=_iso(at) if state == "running" else None, finished_at=_iso(at) if finished else None,
        runtime=event.get("runtime"), worker=event["worker"], error=event.get("error") or "",
        attempts=event.get("starts", 0), dead_letter_id=event.get("dead_letter_id"), history=entry)


def _record(*, task_id, task_name, state, seq, at, history, queue="", tenant_id=None, tenant_slug="",
            batch_id=None, eta=None, arguments="", started_at=None, finished_at=None, runtime=None, worker="",
            error="", attempts=0, dead_letter_id=None) -> dict:
    return {"task_id": str(task_id), "task_name": task_name, "queue": queue, "tenant_id": _int(tenant_id),
            "tenant_slug": str(tenant_slug)[:40], "state": state, "seq": seq, "attempts": attempts,
            "eta": _iso(eta), "created_at": _iso(at), "started_at": started_at, "finished_at": finished_at,
            "runtime": runtime, "worker": str(worker)[:200], "arguments": arguments, "error": error,
            "history": [history], "batch_id": str(batch_id) if batch_id else None, "dead_letter_id": dead_letter_id}


def _int(value) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _eta(value) -> float | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    except (TypeError, ValueError, AttributeError):
        return None


def _body_arguments(body) -> tuple:
    if isinstance(body, tuple | list) and len(body) == 3:  # protocol 2: (args, kwargs, embed)
        return body[0], body[1]
    if isinstance(body, dict):  # protocol 1
        return body.get("args"), body.get("kwargs")
    return None, None


def _arguments(args, kwargs) -> str:
    """What the console shows and searches: redacted, as JSON text, bounded."""
    text = json.dumps({"args": redacted(list(args or ())), "kwargs": redacted(dict(kwargs or {}))},
                      default=str, sort_keys=True)
    return text if len(text) <= ARGUMENTS_LIMIT else text[:ARGUMENTS_LIMIT - 1] + "…"


def _merge(old: dict, new: dict) -> dict:
    """Two records of one task from this process, ``new`` the later: the
    same rules as the upsert, so one statement carries both."""
    winner = new if new["seq"] >= old["seq"] else old
    merged = dict(old)
    for name in ("queue", "tenant_slug", "arguments"):
        merged[name] = old[name] or new[name]
    for name in ("tenant_id", "batch_id"):
        merged[name] = old[name] if old[name] is not None else new[name]
    for name in ("state", "eta", "finished_at", "runtime"):
        merged[name] = winner[name]
    merged["seq"] = max(old["seq"], new["seq"])
    merged["attempts"] = old["attempts"] + new["attempts"]
    merged["created_at"] = min(old["created_at"], new["created_at"])
    merged["started_at"] = max((v for v in (old["started_at"], new["started_at"]) if v), default=None)
    merged["worker"] = new["worker"] or old["worker"]
    merged["error"] = new["error"] or old["error"]
    merged["dead_letter_id"] = new["dead_letter_id"] or old["dead_letter_id"]
    merged["history"] = (old["history"] + new["history"])[:HISTORY_LIMIT]
    return merged


def _records(events: list[tuple], into: dict[str, dict]) -> dict[str, dict]:
    for event in events:
        try:
            record = _published_record(*event[1:]) if event[0] == "published" else _worker_record(event[1])
        except Exception:  # one odd message must not cost the others their records
            logger.warning("job record skipped", exc_info=True)
            continue
        if record is None:
            continue
        known = into.get(record["task_id"])
        into[record["task_id"]] = record if known is None else _merge(known, record)
    return into


# --- writing ---------------------------------------------------------------------


def flush() -> int:
    """Write what this process gathered; returns the records written. Called
    by the flusher thread, at exit, and by tests (which want it now)."""
    with _buffer.lock:
        return _flush_locked()


def _flush_locked() -> int:
    from .models import Job

    events = _buffer.take()
    if _buffer.dropped:
        dropped, _buffer.dropped = _buffer.dropped, 0
        logger.warning("job records dropped: buffer full", extra={"dropped": dropped})
    records, _buffer.carry = _records(events, _buffer.carry), {}
    alias = router.db_for_write(Job)
    if not records:
        _close(alias)  # idle: the flusher thread holds no session between bursts
        return 0
    rows = sorted(records.values(), key=lambda record: record["task_id"])
    written = 0
    try:
        with connections[alias].cursor() as cursor:
            for start in range(0, len(rows), STATEMENT_ROWS):
                chunk = rows[start:start + STATEMENT_ROWS]
                cursor.execute(UPSERT_SQL, [json.dumps(chunk, default=str), HISTORY_LIMIT])
                written += len(chunk)
    except Exception as exc:
        _close(alias)
        kept = rows[written:][: settings.JOB_RECORD_BUFFER_SIZE]
        _buffer.carry = {record["task_id"]: record for record in kept}
        _warn_failed(exc, kept=len(kept), lost=len(rows) - written - len(kept))
    return written


def _close(alias: str) -> None:
    connection = connections[alias]
    if not connection.in_atomic_block:  # a caller's transaction (a test flushing now) is not ours to end
        connection.close()


_last_warning = [0.0]


def _warn_failed(exc: Exception, *, kept: int, lost: int) -> None:
    """At most one line a minute while the database stays away."""
    if lost or time.monotonic() - _last_warning[0] > 60:
        _last_warning[0] = time.monotonic()
        logger.warning("job records not written; kept for the next round",
                       extra={"error": str(exc)[:200], "kept": kept, "lost": lost})


def _flush_quietly(**kwargs) -> None:
    # At exit too: a process that recorded nothing (a command that stopped on
    # a bad setting, say) has nothing to write and must not touch Django.
    if not (_buffer.events or _buffer.carry or _buffer.dropped):
        return
    try:
        flush()
    except Exception as exc:  # the last events of an exiting process: one line, never a traceback
        logger.warning("job records: last flush failed", extra={"error": str(exc)[:200]})


def connect() -> None:
    signals.after_task_publish.connect(record_published, dispatch_uid="jobs.records.published", weak=False)
    signals.task_prerun.connect(record_started, dispatch_uid="jobs.records.started", weak=False)
    signals.task_postrun.connect(record_finished, dispatch_uid="jobs.records.finished", weak=False)
    # A pool process that exits (recycled, or the worker stopping) writes its last events.
    signals.worker_process_shutdown.connect(_flush_quietly, dispatch_uid="jobs.records.child_exit", weak=False)


atexit.register(_flush_quietly)
