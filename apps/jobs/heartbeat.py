"""A worker's heartbeat on the messages it holds, for the Redis broker.

Redis has no acknowledgements of its own. kombu keeps every delivered,
unacknowledged message in the ``unacked`` hash, with its delivery time as
score in the ``unacked_index`` sorted set, and every worker puts the entries
older than the visibility timeout back on their queue (``restore_visible``,
every ``unacked_restore_interval`` seconds). That is how the task of a worker
that died runs again. Without more, a live worker's long task would come back
too after the timeout and run twice, so the timeout had to exceed the longest
task (hours), and the work of a dead worker waited that long.

This consumer step re-scores, every visibility timeout / 5, each message the
worker holds (running, reserved, or waiting for its ETA) with
``ZADD XX <now>``: a live worker's messages never look expired, however long
they run, so the timeout can be a few minutes, and a dead worker's messages
are restored by the other workers within that. ``XX`` only updates: a message
acknowledged meanwhile is not put back in the index.

The second step here (``WorkerPresence``) records each worker's presence in
Redis for the operator console: see "presence" below.
"""

from __future__ import annotations

import json
import logging
import os
import time

from celery import bootsteps
from celery.worker import state

logger = logging.getLogger(__name__)

HEARTBEATS_PER_TIMEOUT = 5


def held_delivery_tags() -> list[str]:
    """Delivery tags of every message this worker process holds unacknowledged."""
    held = {*state.active_requests, *state.reserved_requests, *state.scheduled_requests}
    return [request.message.delivery_tag for request in held if request.message is not None]


class UnackedHeartbeat(bootsteps.StartStopStep):
    """Keep this worker's unacknowledged Redis messages fresh (see module doc)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer_entry = None

    def start(self, consumer):
        channel = getattr(consumer.task_consumer, "channel", None)
        if not hasattr(channel, "unacked_index_key"):
            return  # not the Redis transport: RabbitMQ redelivers on connection loss
        interval = max(1.0, channel.visibility_timeout / HEARTBEATS_PER_TIMEOUT)
        self.timer_entry = consumer.timer.call_repeatedly(interval, self.beat, (channel,))

    def stop(self, consumer):
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    shutdown = stop

    @staticmethod
    def beat(channel) -> int:
        tags = held_delivery_tags()
        if not tags:
            return 0
        now = time.time()
        try:
            with channel.conn_or_acquire() as client:
                client.zadd(channel.unacked_index_key, dict.fromkeys(tags, now), xx=True)
        except channel.connection_errors as exc:
            # Missing a beat is safe while the next one comes before the
            # timeout; the broker being away that long means redelivery.
            logger.warning("unacked heartbeat failed", extra={"error": str(exc)[:200], "held": len(tags)})
            return 0
        return len(tags)


# --- presence -------------------------------------------------------------------
#
# Who is alive, for the operator console: every WORKER_PRESENCE_SECONDS each
# worker writes its hostname, queues, concurrency and how many tasks it runs
# to Redis, in a hash (field: hostname) beside a sorted set of the same names
# scored by when the entry lapses (3 intervals on). Readers take all live
# entries in one script (and drop lapsed ones): one round trip, whatever the
# number of workers, instead of a broadcast that waits out its whole timeout
# because it cannot know how many workers will answer. A worker that stops
# removes its entry; one that is killed lapses.

PRESENCE_TTL_INTERVALS = 3

# KEYS: index, entries. ARGV: now. -> the live entries (JSON).
_LIVE = """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  redis.call('HDEL', KEYS[2], unpack(lapsed))
end
local names = redis.call('ZRANGE', KEYS[1], 0, -1)
if #names == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(names))
"""


def _presence_keys() -> tuple[str, str]:
    from django.conf import settings

    prefix = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:workers"
    return f"{prefix}:index", f"{prefix}:entries"


def presence_interval() -> float:
    """WORKER_PRESENCE_SECONDS, read at each beat (a changed setting applies)."""
    from django.conf import settings

    return settings.WORKER_PRESENCE_SECONDS


def _presence_client():
    from apps.caching.connections import redis_client

    return redis_client()


def presence_write(entry: dict, interval: float) -> bool:
    """Record ``entry`` (its "hostname" is the key) for 3 intervals. Never raises."""
    index, entries = _presence_keys()
    lapses = time.time() + PRESENCE_TTL_INTERVALS * interval
    try:
        pipe = _presence_client().pipeline(transaction=True)
        pipe.hset(entries, entry["hostname"], json.dumps(entry))
        pipe.zadd(index, {entry["hostname"]: lapses})
        # Both keys go if every worker is gone for long (a test run, say).
        for key in (index, entries):
            pipe.expire(key, int(PRESENCE_TTL_INTERVALS * interval) + 60)
        pipe.execute()
        return True
    except Exception as exc:
        logger.warning("worker presence not recorded", extra={"error": str(exc)[:200]})
        return False


def presence_remove(hostname: str) -> None:
    index, entries = _presence_keys()
    try:
        _presence_client().pipeline(transaction=True).zrem(index, hostname).hdel(entries, hostname).execute()
    except Exception as exc:  # it lapses instead
        logger.warning("worker presence not removed", extra={"error": str(exc)[:200]})


def live_workers() -> list[dict]:
    """Every live worker's entry (hostname, queues, concurrency, active, at),
    in one round trip bounded by REDIS_TIMEOUT_SECONDS. Raises when Redis
    does not answer: the caller shows the reading as unavailable."""
    index, entries = _presence_keys()
    raw = _presence_client().eval(_LIVE, 2, index, entries, time.time())
    workers = [json.loads(item) for item in raw if item]
    return sorted(workers, key=lambda entry: entry.get("hostname", ""))


class WorkerPresence(bootsteps.StartStopStep):
    """Keep this worker's presence entry fresh (see above), from a thread of
    its own so that a slow Redis never holds the consumer's event loop."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.entry: dict = {}
        self.flusher = None

    def start(self, consumer):
        from apps.caching.flushers import Flusher

        controller = getattr(consumer, "controller", None)
        self.entry = {"hostname": consumer.hostname, "pid": os.getpid(), "started": time.time(),
                      "queues": sorted(queue.name for queue in consumer.task_consumer.queues),
                      "concurrency": getattr(controller, "concurrency", None)}
        self.beat()  # seen at once, not one interval after start
        if self.flusher is None:
            self.flusher = Flusher("worker-presence", self.beat, presence_interval)
        self.flusher.ensure_started()

    def beat(self) -> bool:
        entry = {**self.entry, "active": len(state.active_requests), "reserved": len(state.reserved_requests),
                 "scheduled": len(state.scheduled_requests), "at": time.time()}
        return presence_write(entry, presence_interval())

    def stop(self, consumer):
        if self.flusher is not None:
            self.flusher.stop(timeout=1.0)

    def shutdown(self, consumer):
        self.stop(consumer)
        if self.entry:
            presence_remove(self.entry["hostname"])
