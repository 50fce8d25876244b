"""The base class of every platform task.

* Tenant context: a task with ``tenant_scoped = True`` carries the tenant id
  (and the request id that caused it) in its message headers. Enqueueing one
  with no tenant active fails at once; the worker activates the tenant's
  shard and schema before the body and deactivates it after.
* Retries: temporary failures (RetryLater, database/network errors) retry
  with exponential backoff and full jitter up to ``max_retries``; anything
  else, and a temporary failure after the last attempt, is a dead letter.
* A tenant that is busy (its writes frozen for a move, or its schema renamed
  or gone because a move is switching it to another shard) is temporary too:
  the task retries with backoff, up to ``tenant_busy_max_retries``, and each
  attempt resolves the tenant afresh from the registry, so it runs wherever
  the tenant lives by then.
* Fairness: at most the plan's ``task_concurrency`` tasks of one tenant run
  at once per queue; more are parked in Redis and re-published as its
  running tasks end (apps/jobs/fairness.py).
* Logs: the message carries a redacted ``argsrepr``/``kwargsrepr`` (argument
  names only), so the worker's log lines, events and ``celery inspect`` never
  show a token or a signed link that a task received.
* Unique jobs: a task with ``unique_for`` (seconds) runs once per key and
  window; the other messages with its key are skipped (apps/jobs/uniqueness.py).
* Batches: a job sent with a ``batch_id`` header is counted once when it
  finishes, and a ``batch_callback`` runs once (apps/jobs/batches.py).
"""

from __future__ import annotations

import logging
import random
from typing import NoReturn

from celery import Task
from celery.exceptions import Ignore
from celery.utils.time import get_exponential_backoff_interval
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, ProgrammingError
from django.utils import timezone

from apps.observability.context import request_id_var, tenant_var, user_var
from apps.tenancy.context import NoActiveTenant, active_tenant

from . import fairness
from .errors import PermanentError, RetryLater
from .redaction import redacted_repr

logger = logging.getLogger(__name__)

# Celery reads these settings on every send, through a chain of maps whose
# middle one is Django's settings object behind a "CELERY_" prefix: about
# 25 us a lookup, four per apply_async (a quarter of a bare Redis publish).
# They do not change while a process runs, so the first send copies them into
# the chain's first map, where a lookup costs a third of that.
_SEND_SETTINGS = ("task_always_eager", "task_send_sent_event", "broker_pool_acquire_timeout")

TEMPORARY_ERRORS = (RetryLater, OperationalError, InterfaceError, ConnectionError, TimeoutError)
FIRST_FAILURE_KEY = "jobs:first-failure:{}"


class TenantBusy(RetryLater):
    """The tenant is being moved: its writes are frozen, or its schema is not
    (or no longer) where this attempt looked for it."""


def _missing_relation(exc: BaseException) -> bool:
    """A query met a schema or table that is not there (psycopg's cause)."""
    from psycopg import errors

    return isinstance(exc, ProgrammingError) and isinstance(
        exc.__cause__, errors.UndefinedTable | errors.InvalidSchemaName)


class PlatformTask(Task):
    abstract = True
    tenant_scoped = False
    # Tenant messages over their plan's limit are parked as they arrive
    # (apps/jobs/fairness.py); other messages take Celery's default path.
    Strategy = "apps.jobs.fairness:fair_strategy"
    autoretry_for = TEMPORARY_ERRORS
    dont_autoretry_for = (PermanentError,)
    max_retries = 5
    retry_backoff = 2  # seconds, doubled per attempt...
    retry_backoff_max = 600  # ...up to ten minutes,
    retry_jitter = True  # with full jitter: a random delay in [0, backoff]
    # A move keeps a tenant busy for its copy (minutes for a large tenant):
    # about 20 minutes of backoff on average before giving up.
    tenant_busy_max_retries = 12
    # Unique jobs (apps/jobs/uniqueness.py): the window in seconds (None: not
    # unique), and optionally ``unique_key(args, kwargs) -> str`` instead of
    # the arguments.
    unique_for: float | None = None
    unique_key = None

    # --- producer side ---------------------------------------------------

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None,
                    shadow=None, **options):
        app = self._get_app()
        if not app.__dict__.get("_send_settings_pinned"):
            for key in _SEND_SETTINGS:
                app.conf[key] = app.conf[key]
            app._send_settings_pinned = True
        headers = dict(options.pop("headers", None) or {})
        headers.setdefault("request_id", request_id_var.get())
        headers.setdefault("user_id", user_var.get())
        if self.tenant_scoped and not headers.get("tenant_id"):
            tenant = active_tenant()
            if tenant is None:
                raise NoActiveTenant(f"{self.name} is a tenant task; enqueue it with a tenant active.")
            headers.update(tenant_id=tenant.pk, tenant_slug=tenant.slug)
        self.check_arguments(args, kwargs)
        argsrepr, kwargsrepr = redacted_repr(args, kwargs)
        options.setdefault("argsrepr", argsrepr)
        options.setdefault("kwargsrepr", kwargsrepr)
        return super().apply_async(args, kwargs, task_id=task_id, producer=producer, link=link,
                                   link_error=link_error, shadow=shadow, headers=headers, **options)

    def check_arguments(self, args, kwargs) -> None:
        """Hook: raise ValueError for arguments this task must never be queued
        with. Runs where the message is made (``apply_async`` and the outbox's
        ``enqueue``), so a bad message fails its sender, not a worker later."""

    # --- worker side -----------------------------------------------------

    def header(self, name: str):
        value = getattr(self.request, name, None)
        if value is None:
            value = (getattr(self.request, "headers", None) or {}).get(name)
        return value

    def __call__(self, *args, **kwargs):
        request_token = request_id_var.set(self.header("request_id"))
        user_token = user_var.set(self.header("user_id"))
        try:
            holder = self._unique_holder(args, kwargs)
            if holder is not None:
                # Acknowledged, not run: the run holding the key does the work.
                self.request.job_skipped = f"duplicate of {holder}"
                self._finish_batch_job("skipped")
                raise Ignore()
            result = self._run_body(args, kwargs)
            self._finish_batch_job("succeeded")
            return result
        finally:
            request_id_var.reset(request_token)
            user_var.reset(user_token)
            tenant_var.set(None)

    def _delivered(self) -> bool:
        """Run by a worker from a message: not called directly, not applied eagerly in process."""
        request = self.request
        return bool(request.id) and not request.called_directly and not request.is_eager

    def _backoff(self) -> float:
        return get_exponential_backoff_interval(
            factor=int(self.retry_backoff), retries=self.request.retries, maximum=self.retry_backoff_max,
            full_jitter=self.retry_jitter)

    def _retry_soon(self, exc: BaseException) -> NoReturn:
        """A temporary failure of the machinery around the body (outside
        ``run``, so autoretry does not see it): retry like the body would."""
        raise self.retry(exc=exc, countdown=self._backoff())

    def _unique_holder(self, args, kwargs) -> str | None:
        """None when this run may go; else the task id holding its key."""
        if not self.unique_for or not self._delivered():
            return None
        from . import uniqueness

        key = uniqueness.key_for(self, args, kwargs, self.header("tenant_id"))
        self.request.job_unique_key = key
        try:
            holder = uniqueness.claim(key, self.request.id, float(self.unique_for))
        except TEMPORARY_ERRORS as exc:  # neither Redis nor the database answered
            self._retry_soon(exc)
        return None if holder == self.request.id else holder

    def _finish_batch_job(self, outcome: str) -> None:
        batch_id = self.header("batch_id")
        if not batch_id or not self._delivered():
            return
        from .batches import job_finished

        try:
            job_finished(batch_id=batch_id, task_id=self.request.id, outcome=outcome)
        except TEMPORARY_ERRORS as exc:
            self._retry_soon(exc)

    def _run_body(self, args, kwargs):
        """The body, once only when this is a batch's callback."""
        batch_id = self.header("batch_callback")
        if not batch_id or not self._delivered():
            return self._run_for_message(args, kwargs)
        from .batches import callback_once
        from .services import EffectInProgress

        try:
            with callback_once(batch_id, self.name) as needed:
                return self._run_for_message(args, kwargs) if needed else None
        except EffectInProgress as exc:  # another delivery is running it
            self._retry_soon(exc)

    def _run_for_message(self, args, kwargs):
        if not self.tenant_scoped:
            return super().__call__(*args, **kwargs)
        tenant_id = self.header("tenant_id")
        if not tenant_id:
            raise PermanentError(f"{self.name}: no tenant {tenant_id!r} to run for")
        # One tenant may not fill a queue's workers: over its plan's
        # limit the message is parked and acknowledged (apps/jobs/fairness.py).
        slot = fairness.acquire(self, tenant_id=tenant_id)
        if slot is False:
            raise Ignore()
        try:
            return self._run_for_tenant(tenant_id, args, kwargs)
        finally:
            if slot is not None:
                fairness.release(slot)

    def _run_for_tenant(self, tenant_id, args, kwargs):
        from apps.tenancy.activation import tenant_activated
        from apps.tenancy.models import Tenant

        # Fresh from the registry on every attempt: a move may have put
        # the tenant on another shard since the message was sent.
        tenant = Tenant.objects.select_related("shard").filter(pk=tenant_id).first()
        if tenant is None or tenant.shard is None:
            raise PermanentError(f"{self.name}: no tenant {tenant_id!r} to run for")
        if not tenant.accepts_writes:
            self.retry_tenant_busy(TenantBusy(f"tenant {tenant.slug} does not accept writes now"),
                                   frozen_until=tenant.writes_frozen_until if tenant.writes_frozen else None)
        try:
            with tenant_activated(tenant):
                return super().__call__(*args, **kwargs)
        except ProgrammingError as exc:
            if not _missing_relation(exc) or not self._tenant_moving(tenant):
                raise
            self.retry_tenant_busy(TenantBusy(f"tenant {tenant.slug} is moving: {exc}"[:300]))

    @staticmethod
    def _tenant_moving(tenant) -> bool:
        """True when ``tenant``'s schema is not where it was looked for: the
        registry now places it elsewhere, or the schema is renamed or gone
        (a move is switching it). A table missing from a schema that is
        there is a real programming error."""
        from apps.tenancy.models import Tenant
        from apps.tenancy.schemas import schema_exists

        now = Tenant.objects.select_related("shard").filter(pk=tenant.pk).first()
        if now is None or now.shard is None:
            return False
        if (now.shard.alias, now.schema_name) != (tenant.shard.alias, tenant.schema_name):
            return True
        return not schema_exists(now.shard.alias, now.schema_name)

    def retry_tenant_busy(self, exc: TenantBusy, *, frozen_until=None) -> NoReturn:
        """Retry later with backoff; a dead letter after tenant_busy_max_retries.

        Except for a write freeze: it is a lease that ends by itself (the move
        finishes, or a dead mover's lease lapses), so the task waits no longer
        than the lease's deadline between attempts, retries as often as it
        takes, and is never a dead letter for it.
        """
        countdown = self._backoff()
        if frozen_until is not None:
            until_deadline = max(0.5, (frozen_until - timezone.now()).total_seconds()) + random.uniform(0, 1)
            raise self.retry(exc=exc, countdown=min(countdown, until_deadline),
                             max_retries=self.request.retries + 1)  # never reached
        limit = None if self.max_retries is None else max(self.max_retries, self.tenant_busy_max_retries)
        raise self.retry(exc=exc, countdown=countdown, max_retries=limit)

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        cache.add(FIRST_FAILURE_KEY.format(task_id), timezone.now(), timeout=7 * 24 * 3600)
        logger.warning("task retry", extra={"task": self.name, "task_id": task_id, "error": str(exc)[:200],
                                             "attempt": self.request.retries + 1})

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from .services import dead_letter_record

        first = cache.get(FIRST_FAILURE_KEY.format(task_id))
        dead = dead_letter_record(
            task_name=self.name, task_id=task_id, args=list(args or []), kwargs=dict(kwargs or {}),
            headers={k: self.header(k) for k in ("tenant_id", "tenant_slug", "request_id", "user_id") if self.header(k)},
            queue=(getattr(self.request, "delivery_info", None) or {}).get("routing_key") or "",
            exception=f"{type(exc).__name__}: {exc}", traceback=str(einfo or ""),
            attempts=self.request.retries + 1, first_failed_at=first,
        )
        self.request.job_dead_letter_id = dead.pk  # the job record links to it (apps/jobs/records.py)
        cache.delete(FIRST_FAILURE_KEY.format(task_id))
        self._after_dead(task_id)
        self._run_gave_up(exc, args, kwargs)

    def _after_dead(self, task_id: str) -> None:
        """Dead: the unique key is free for a new try; the batch counts a failure."""
        try:
            key = getattr(self.request, "job_unique_key", None)
            if key:
                from . import uniqueness

                uniqueness.release(key, task_id)
            batch_id = self.header("batch_id")
            if batch_id and self._delivered():
                from .batches import job_finished

                job_finished(batch_id=batch_id, task_id=task_id, outcome="failed")
        except Exception:  # the dead letter is recorded; an operator's replay can finish the rest
            logger.exception("task dead-letter follow-up failed", extra={"task": self.name, "task_id": task_id})

    def gave_up(self, exc, args, kwargs) -> None:
        """Hook: the task went to the dead letters; a tenant task runs it with
        its tenant active (e.g. to mark the tenant's job failed)."""

    def _run_gave_up(self, exc, args, kwargs) -> None:
        if type(self).gave_up is PlatformTask.gave_up:
            return
        try:
            if not self.tenant_scoped:
                self.gave_up(exc, args, kwargs)
                return
            from apps.tenancy.activation import tenant_activated
            from apps.tenancy.models import Tenant

            tenant = Tenant.objects.select_related("shard").filter(pk=self.header("tenant_id")).first()
            if tenant is not None and tenant.shard is not None:
                with tenant_activated(tenant):
                    self.gave_up(exc, args, kwargs)
        except Exception:  # the dead letter is recorded; this is only its echo
            logger.exception("task gave_up hook failed", extra={"task": self.name})
        finally:
            tenant_var.set(None)


class TenantTask(PlatformTask):
    abstract = True
    tenant_scoped = True
