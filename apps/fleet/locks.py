"""Locks of a move: one mover per tenant, the freeze lease, the source tables."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, OperationalError, connections, transaction
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from apps.tenancy.models import Move, Tenant

from .records import MoveInProgress, MoveLocksUnavailable

logger = logging.getLogger(__name__)

# First key of pg_try_advisory_xact_lock(int, int): moves' own namespace of
# advisory locks on the control database, the tenant id being the second.
ADVISORY_NAMESPACE = 0x6D6F7665  # "move"
# SQLSTATEs of a lock the mover could not get in time: lock_not_available,
# deadlock_detected. The mover gives way and tries again.
LOCK_CONFLICTS = {"55P03", "40P01"}


# --- one mover per tenant, and its lease ---------------------------------------


class MoverLock:
    """The tenant's move lock: an advisory lock in a transaction kept open on a
    control-database connection of this process's own. Dies with the process."""

    def __init__(self, tenant_id: int):
        self.tenant_id = tenant_id
        self.connection = None
        self.lost = False
        self._use = threading.Lock()

    def acquire(self) -> bool:
        db = connections["default"]
        self.connection = db.get_new_connection(db.get_connection_params())
        self.connection.autocommit = False
        got = self.connection.execute("SELECT pg_try_advisory_xact_lock(%s, %s)",
                                      [ADVISORY_NAMESPACE, self.tenant_id]).fetchone()[0]
        if not got:
            self.release()
        return got

    def ping(self) -> None:
        """Keep the session visibly alive; remember if it is gone (the lock with it)."""
        with self._use:
            try:
                self.connection.execute("SELECT 1")
            except Exception:
                self.lost = True
                raise

    def release(self) -> None:
        with self._use:
            if self.connection is not None:
                try:
                    self.connection.close()  # ends the transaction and with it the lock
                finally:
                    self.connection = None


class Lease:
    """The mover's heartbeat: every third of MOVE_LEASE_SECONDS, record the
    heartbeat and, while freezing, push the tenant's freeze deadline ahead.

    A thread of its own (with its own database connections), so a long COPY
    or a wait on a lock does not let the freeze lapse under a live mover.
    """

    def __init__(self, move: Move, lock: MoverLock):
        self.move_id, self.tenant_id, self.lock = move.pk, move.tenant_id, lock
        self.seconds = settings.MOVE_LEASE_SECONDS
        self.freezing = False
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"move-{move.pk}-lease", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.seconds)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.seconds / 3):
                try:
                    self.beat()
                except Exception:  # the control plane blinked; the next beat tries again
                    logger.exception("move heartbeat failed", extra={"move": self.move_id})
        finally:
            connections.close_all()  # this thread's connections only

    def beat(self) -> None:
        self.lock.ping()
        with self._guard:
            Move.objects.filter(pk=self.move_id).update(heartbeat_at=timezone.now())
            if self.freezing:
                self._extend()

    def freeze(self) -> None:
        with self._guard:
            self.freezing = True
            self._extend()

    def stop_renewing(self) -> None:
        """Before the mover ends the freeze itself: no beat may renew it after."""
        with self._guard:
            self.freezing = False

    def _extend(self) -> None:
        tenant = Tenant.objects.get(pk=self.tenant_id)
        tenant.writes_frozen_until = timezone.now() + timedelta(seconds=self.seconds)
        tenant.save(update_fields=["writes_frozen_until"])  # signals drop the cached host lookups


def acquire_mover_lock(tenant: Tenant) -> MoverLock:
    lock = MoverLock(tenant.pk)
    if not lock.acquire():
        running = Move.objects.filter(tenant=tenant, finished_at__isnull=True).first()
        where = f" (move {running.pk}, phase {running.phase}, by {running.mover})" if running else ""
        raise MoveInProgress(f"Tenant '{tenant.slug}' is being moved by another process{where}; not starting.")
    return lock


# --- the source tables ----------------------------------------------------------


def _is_lock_conflict(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) in LOCK_CONFLICTS


def lock_source_tables(alias: str, schema: str, tables: list[str]) -> int:
    """SHARE-lock every table of ``schema`` in the open transaction; the attempts it took.

    One statement, tables in name order, so the mover never holds some tables
    while waiting for others across statements; and a lock timeout below
    PostgreSQL's deadlock_timeout, so that if a client transaction holds one
    table and wants another the mover holds, the mover gives way (its
    savepoint rolls back, releasing what it got) before the deadlock detector
    could pick the client's write as the victim. Waiting writes queue behind
    the LOCK for at most that timeout.
    """
    names = ", ".join(f"{q(schema)}.{q(t)}" for t in sorted(tables))
    attempts = settings.MOVE_LOCK_ATTEMPTS
    for attempt in range(1, attempts + 1):
        _cancel_autovacuum(alias, schema)
        try:
            with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)",
                               [f"{int(settings.MOVE_LOCK_TIMEOUT_SECONDS * 1000)}ms"])
                cursor.execute(f"LOCK TABLE {names} IN SHARE MODE")
            return attempt
        except OperationalError as exc:
            if not _is_lock_conflict(exc):
                raise
            if attempt == attempts:
                raise MoveLocksUnavailable(
                    f"could not lock {schema}'s tables in {attempts} attempts of "
                    f"{settings.MOVE_LOCK_TIMEOUT_SECONDS}s: long transactions hold them") from exc
            time.sleep(random.uniform(0.05, 0.25) * min(attempt, 8))  # let the client's transaction finish
    raise AssertionError("unreachable")


def _cancel_autovacuum(alias: str, schema: str) -> None:
    """Cancel autovacuum workers holding locks in ``schema`` (not anti-wraparound ones).

    Autovacuum's SHARE UPDATE EXCLUSIVE conflicts with the mover's SHARE
    lock, and autovacuum only yields to a lock that waited deadlock_timeout
    (1 s), longer than the mover's lock timeout: on a freshly loaded table
    every attempt would time out behind it. Cancelled, autovacuum simply runs
    again later (after the move, on whichever copy is live).
    """
    try:
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT pg_cancel_backend(a.pid) FROM pg_stat_activity a WHERE a.backend_type = 'autovacuum worker' "
                "AND a.datname = current_database() AND a.query NOT LIKE %s AND EXISTS (SELECT 1 FROM pg_locks l "
                "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE l.pid = a.pid AND n.nspname = %s)",
                ["%wraparound%", schema],
            )
    except DatabaseError:  # no right to signal it: the lock attempts wait it out as before
        logger.warning("could not cancel autovacuum on the tenant's tables", extra={"schema": schema})

