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
"""

from __future__ import annotations

import logging
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
