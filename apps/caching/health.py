"""Per-process view of Redis health, and the cache generation.

Why this exists: a cache invalidation is a Redis write. When Redis is paused
or unreachable while a database write commits, that invalidation is lost,
and the entry it should have removed would be served again as soon as Redis
answers. Retrying the invalidation later is not enough on its own (the
process may die first, and other processes keep reading meanwhile). So every
cache key also carries a *generation*, and the rule is:

* A process that has seen Redis fail (a request-path call, or this
  monitor's own probe) is *suspect*: it serves nothing from Redis.
* On its first success after that, it raises the global generation in Redis
  (``bump``) before serving anything cached again, and adopts the new value.
  Entries written under an older generation are unreachable for everyone.
* Every process probes Redis every ``REDIS_HEALTH_INTERVAL_SECONDS`` with a
  timeout (``REDIS_HEALTH_TIMEOUT_SECONDS``) shorter than the request path's
  (``REDIS_TIMEOUT_SECONDS``). Probes start at most interval + timeout apart,
  so with interval + 2 x timeout <= request timeout, any stretch of silence
  as long as the request timeout contains a whole failed probe in *every*
  live process. A write gives up on its invalidation only after Redis has
  failed it for that long (``versioned.invalidate``), so every process has
  seen the outage and raises or adopts a new generation before it serves
  from Redis again: the lost invalidation cannot be followed by a stale read.
  The probe also reads the global generation, so a raise by any process
  reaches all processes within one interval.
* A read whose answer arrives after the process turned suspect (or changed
  generation) is discarded too: Redis may have been holding that answer
  through the very pause that lost an invalidation.

Why not less: without the generation, a retried invalidation still leaves a
window (and none if the writer dies); without the probe, a process that made
no Redis call during the outage would not know it happened. Why not more: the
generation is local, so it costs the hot path no round trip; the probe is one
small script per interval per process, off the request path.

A process that could not reach Redis while the others could (a partial
partition, a ``manage.py`` run) is the one case the probes cannot see. Its
failed invalidations are recorded in the control plane and re-applied by the
sweep (``versioned.apply_pending``, every ``CACHE_INVALIDATION_SWEEP_SECONDS``),
and when it reaches Redis again its own generation raise reaches everyone
within one interval; stale reads last until the first of the two.

The state is per process (keyed by ``os.getpid()``): a forked child (gunicorn,
Celery prefork) starts its own monitor thread instead of inheriting a dead one.

Callers with a fallback of their own ask a second, simpler question here:
did Redis fail in this process a moment ago (``suspect``, ``record_failure``,
``record_success``; see "Failure pauses" below).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings
from redis.exceptions import RedisError

from .connections import health_probe_client

logger = logging.getLogger(__name__)

# Read the global generation; raise it when asked to (a suspect process
# coming back) or when it is below what this process already used (Redis lost
# it: restart without persistence, eviction), so it never goes back to a value
# whose entries may still exist. A missing key starts at the caller's clock
# in milliseconds, above any value that was counted up from an earlier start.
GENERATION_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
local generation = tonumber(raw or ARGV[3])
local floor = tonumber(ARGV[2])
if ARGV[1] == '1' or generation < floor then
  generation = math.max(generation, floor) + 1
end
if ARGV[1] == '1' or raw == false or generation ~= tonumber(raw) then
  redis.call('SET', KEYS[1], string.format('%d', generation))
end
return string.format('%d', generation)
"""


def cache_location() -> str:
    return settings.CACHES["default"]["LOCATION"]


def generation_key() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:cache:generation"


class RedisHealth:
    """The monitor of one process for one Redis URL."""

    def __init__(self, url: str):
        self.url = url
        self.pid = os.getpid()
        self.serving: int | None = None  # the generation to use; None: do not serve from Redis
        self.failing_since: float | None = None  # first failure with no success since (monotonic)
        self.failures = 0
        self.bump_needed = False
        self.floor = 0
        self.bumps = 0
        self._state = threading.Lock()
        self._checking = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        timeout = settings.REDIS_HEALTH_TIMEOUT_SECONDS
        if settings.REDIS_HEALTH_INTERVAL_SECONDS + 2 * timeout > settings.REDIS_TIMEOUT_SECONDS:
            logger.warning("redis health probe too slow for REDIS_TIMEOUT_SECONDS: a short outage may go unseen "
                           "by some processes (keep interval + 2 x timeout <= request timeout)")
        # Its own client: the probe must not queue behind request traffic on
        # the shared pool, and its timeout is the shorter one.
        self._client = health_probe_client(url)
        self._script = self._client.register_script(GENERATION_SCRIPT)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="redis-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = settings.REDIS_HEALTH_INTERVAL_SECONDS
        while not self._stop.wait(interval):
            self.check()

    def report_failure(self) -> None:
        with self._state:
            if self.serving is not None:
                logger.warning("redis unavailable: cache bypassed until it answers again")
            self.serving = None
            self.failures += 1
            self.bump_needed = True
            if self.failing_since is None:
                self.failing_since = time.monotonic()

    def outage_seconds(self) -> float:
        since = self.failing_since
        return 0.0 if since is None else time.monotonic() - since

    def check(self) -> None:
        """Probe Redis once; on success, adopt (raising first if needed) the generation."""
        with self._checking:
            with self._state:
                failures_before, bump = self.failures, self.bump_needed
            try:
                generation = int(self._script(keys=[generation_key()],
                                              args=[int(bump), self.floor, int(time.time() * 1000)]))
            except RedisError:
                self.report_failure()
                return
            with self._state:
                self.floor = generation
                if bump:
                    self.bumps += 1
                if self.failures != failures_before:
                    return  # failed meanwhile: stay suspect, raise again next time
                if bump:
                    logger.warning("redis answers again: cache generation raised", extra={"generation": generation})
                self.bump_needed = False
                self.failing_since = None
                self.serving = generation


_lock = threading.Lock()
_monitor: RedisHealth | None = None


def monitor() -> RedisHealth:
    """This process's monitor of the cache's Redis, started on first use."""
    global _monitor
    current = _monitor
    url = cache_location()
    if current is not None and current.pid == os.getpid() and current.url == url:
        return current
    with _lock:
        current = _monitor
        if current is None or current.pid != os.getpid() or current.url != url:
            if current is not None and current.pid == os.getpid():
                current.stop()
            current = RedisHealth(url)
            current.check()  # once, inline: the first request of a process knows the generation
            current.start()
            _monitor = current
    return current


def generation() -> int | None:
    """The cache generation to read and write under, or None while Redis is
    suspect (then callers use the database and leave Redis alone)."""
    return monitor().serving


def outage_seconds() -> float:
    """How long Redis has been failing for this process without a success in
    between (0 when it answers)."""
    return monitor().outage_seconds()


def report_failure() -> None:
    """A Redis call on the request path failed: bypass Redis until it answers
    again, and raise the generation before serving from it."""
    monitor().report_failure()


# --- failure pauses -----------------------------------------------------------
#
# Callers that have a fallback of their own must not wait out a timeout on
# every call while Redis hangs: the rate limiter and password attempts fall
# back to this process's memory, task fairness runs tasks without a tenant
# limit, the console's traffic flusher drops its counts. Each asks
# ``suspect(within=its retry period)`` before calling Redis and skips Redis
# (uses its fallback) while it is True; a hung Redis then costs one timeout
# per process and period, not one per call. All of them share one record
# per URL: a failure any of them saw pauses all of them, each for its own
# period, and a success any of them saw ends the pause for all.
#
# Kept apart from the monitor above on purpose: the monitor decides whether
# the cache may serve from Redis, its probe timeout is shorter than the
# request path's, and every failure it is told of raises the cache
# generation for all processes; a limiter or flusher failure must neither
# cost the whole cache nor be paused at the probe's pace.
#
# Per process, with no lock: one dict operation is atomic under the GIL, and
# a lock held by another thread at a fork would stay held in the child. A
# forked child inherits its parent's recent failures, which hold for it too.

_failed_at: dict[str, float] = {}  # URL -> time.monotonic() of its last failure with no success since


def suspect(within: float, url: str | None = None) -> bool:
    """Whether Redis at ``url`` (default REDIS_URL) failed in this process
    less than ``within`` seconds ago with no success since; the caller then
    uses its fallback without trying Redis."""
    failed = _failed_at.get(url or settings.REDIS_URL)
    return failed is not None and time.monotonic() < failed + within


def record_failure(url: str | None = None) -> None:
    """A call to Redis at ``url`` (default REDIS_URL) failed or timed out."""
    _failed_at[url or settings.REDIS_URL] = time.monotonic()


def record_success(url: str | None = None) -> None:
    """A call to Redis at ``url`` (default REDIS_URL) was answered: no pause."""
    _failed_at.pop(url or settings.REDIS_URL, None)
