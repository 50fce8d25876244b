"""Shard servers' health as this process sees it: may a replica serve reads,
and is a server presumed down?

A replica is fit when it is reachable and no more than REPLICA_MAX_LAG_BYTES
of WAL behind its primary, checked at most every REPLICA_CHECK_SECONDS per
process. An unfit replica sends reads to the primary instead of failing them
or serving data that is too old.

A replica whose connection fails (at connect or under a query) is unfit at
once, until its next check. A primary that refused a connection is presumed
down for PRIMARY_RECHECK_SECONDS: the database backend then fails a connect
to it at once instead of making every request wait out SHARD_CONNECT_TIMEOUT,
and the router sends its reads to the replica. The
failures are recorded by apps.tenancy.postgresql_backend, where every
database error passes with the alias it came from.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from django.conf import settings
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_status: dict[str, tuple[float, bool]] = {}
_down_until: dict[str, float] = {}

# SQLSTATEs of a server going away under a live session: the 08 class
# (connection exception) and 57P01-57P03 (terminated by an administrator or a
# crash, or not accepting connections while starting up or shutting down).
_SERVER_GONE_STATES = ("08", "57P01", "57P02", "57P03")


class PresumedDown(psycopg.OperationalError):
    """A connect refused by this process because the server refused one moments ago."""


def is_connection_failure(exc: BaseException) -> bool:
    """True when the server could not be reached or went away; False for an
    error of a query on a live server (a lock or statement timeout, a
    deadlock, too many clients), which another copy would not cure."""
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    if not isinstance(cause, psycopg.OperationalError):
        return False
    # psycopg reports refused, timed-out and dropped connections with no SQLSTATE.
    return cause.sqlstate is None or cause.sqlstate.startswith(_SERVER_GONE_STATES)


def _is_shard(alias: str) -> bool:
    return alias.startswith(settings.SHARD_ALIAS_PREFIX)


def _is_replica(alias: str) -> bool:
    return _is_shard(alias) and alias.endswith(settings.REPLICA_ALIAS_SUFFIX)


def _mark_down(alias: str, reason: str, error: BaseException) -> None:
    now = time.monotonic()
    with _lock:
        if _is_replica(alias):
            # Unfit until its next check; the router keeps reads off it. No
            # fast failure at connect: nothing routes there meanwhile.
            seconds = settings.REPLICA_CHECK_SECONDS
            _status[alias] = (now, False)
        else:
            seconds = settings.PRIMARY_RECHECK_SECONDS
            _down_until[alias] = now + seconds
    logger.warning("shard server presumed down",
                   extra={"alias": alias, "reason": reason, "seconds": seconds, "error": str(error)[:200]})


def connect_failed(alias: str, error: BaseException) -> None:
    """A real connection attempt to ``alias`` failed: the server is down (or
    unreachable) for this process until its recheck time has passed."""
    if _is_shard(alias):
        _mark_down(alias, "connect failed", error)


def connection_lost(alias: str, error: BaseException) -> None:
    """An open connection to ``alias`` failed under a query. A replica is
    dropped from reads at once; a primary is left to its next connect, which
    tells a server that is down from a session that was killed on its own."""
    if _is_replica(alias):
        _mark_down(alias, "connection lost", error)


def down_for(alias: str) -> float:
    """Seconds for which ``alias`` is still presumed down (0 when it is not)."""
    with _lock:
        until = _down_until.get(alias)
    return max(0.0, until - time.monotonic()) if until else 0.0


def presumed_down(alias: str) -> bool:
    return down_for(alias) > 0


def _close_quietly(alias: str) -> None:
    try:
        connections[alias].close()
    except DatabaseError:
        pass


def _measure(primary: str, replica: str) -> bool:
    try:
        with connections[replica].cursor() as cursor:
            cursor.execute("SELECT pg_last_wal_replay_lsn()")
            replayed = cursor.fetchone()[0]
    except DatabaseError as exc:
        logger.warning("replica unavailable; reading from the primary", extra={"replica": replica, "error": str(exc)[:200]})
        _close_quietly(replica)
        return False
    if replayed is None:
        return False  # not a standby
    try:
        with connections[primary].cursor() as cursor:
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [replayed])
            lag = int(cursor.fetchone()[0])
    except DatabaseError as exc:
        # The lag is unknown. The router still reads from the replica while
        # the primary is presumed down (stale beats nothing there).
        logger.warning("primary unavailable; replica lag unknown", extra={"replica": replica, "error": str(exc)[:200]})
        _close_quietly(primary)
        return False
    if lag > settings.REPLICA_MAX_LAG_BYTES:
        logger.warning("replica behind; reading from the primary", extra={"replica": replica, "lag_bytes": lag})
        return False
    return True


def replica_fit(primary: str, replica: str) -> bool:
    now = time.monotonic()
    with _lock:
        checked_at, fit = _status.get(replica, (0.0, True))
        if now - checked_at < settings.REPLICA_CHECK_SECONDS:
            return fit
        # Mark as checked first: concurrent threads use the old answer meanwhile.
        _status[replica] = (now, fit)
    fit = _measure(primary, replica)
    with _lock:
        _status[replica] = (time.monotonic(), fit)
    return fit


def forget() -> None:
    with _lock:
        _status.clear()
        _down_until.clear()
