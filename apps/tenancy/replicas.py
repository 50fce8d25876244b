"""Is a shard's replica fit to serve reads? Checked at most every few seconds
per process: reachable, and no more than REPLICA_MAX_LAG_BYTES of WAL behind
its primary. An unfit replica sends reads to the primary instead of failing
them or serving data that is too old."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_status: dict[str, tuple[float, bool]] = {}


def _measure(primary: str, replica: str) -> bool:
    try:
        with connections[replica].cursor() as cursor:
            cursor.execute("SELECT pg_last_wal_replay_lsn()")
            replayed = cursor.fetchone()[0]
        if replayed is None:
            return False  # not a standby
        with connections[primary].cursor() as cursor:
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [replayed])
            lag = int(cursor.fetchone()[0])
    except DatabaseError as exc:
        logger.warning("replica unavailable; reading from the primary", extra={"replica": replica, "error": str(exc)[:200]})
        connections[replica].close()
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
