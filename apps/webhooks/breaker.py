"""A circuit breaker per destination host, shared by every delivery worker.

After WEBHOOKS_BREAKER_FAIL_MAX failed attempts in a row to one host, its
deliveries wait WEBHOOKS_BREAKER_RESET_SECONDS without being tried (they are
put off, not counted as attempts); then one is let through, and its answer
closes the circuit or opens it again. A host that is down costs a few
timeouts per minute instead of one per pending delivery, and the worker
stays free for everyone else's endpoints.

Why not pybreaker (apps/notifications/breaker.py): its Redis storage makes
several round trips per call and a breaker object (and a metric label) per
name, fine for one email provider, not for one host per tenant endpoint.
Here a run reads the state of all its hosts in one round trip and writes
each host's results in one more. If Redis does not answer, every host counts
as closed: the breaker saves work, it never stops deliveries.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from apps.caching.connections import redis_client

logger = logging.getLogger(__name__)


def _key(host: str) -> str:
    return f"{settings.BREAKER_NAMESPACE}:webhook:{host}"


class HostCircuits:
    """The circuits of one batch's hosts: read once, updated as results come."""

    def __init__(self, hosts: set[str]):
        self.failures: dict[str, int] = dict.fromkeys(hosts, 0)
        self.open_until: dict[str, float] = {}
        try:
            pipe = redis_client().pipeline(transaction=False)
            ordered = sorted(hosts)
            for host in ordered:
                pipe.hmget(_key(host), "failures", "open_until")
            for host, (failures, open_until) in zip(ordered, pipe.execute(), strict=True):
                self.failures[host] = int(failures or 0)
                if open_until and float(open_until) > time.time():
                    self.open_until[host] = float(open_until)
        except Exception:
            logger.warning("webhook breaker state unavailable; every host counts as closed", exc_info=True)

    def closed_until(self, host: str) -> float | None:
        """None when ``host`` may be tried now, else when it may again."""
        until = self.open_until.get(host)
        return until if until is not None and until > time.time() else None

    def record(self, host: str, succeeded: bool) -> None:
        """Count one attempt's result (in this process; ``save`` writes it)."""
        if succeeded:
            self.failures[host] = 0
            self.open_until.pop(host, None)
            return
        self.failures[host] = self.failures.get(host, 0) + 1
        if self.failures[host] >= settings.WEBHOOKS_BREAKER_FAIL_MAX:
            self.open_until[host] = time.time() + settings.WEBHOOKS_BREAKER_RESET_SECONDS

    def save(self, hosts: set[str]) -> None:
        try:
            pipe = redis_client().pipeline(transaction=False)
            keep = int(settings.WEBHOOKS_BREAKER_RESET_SECONDS * 10) + 3600
            for host in hosts:
                if self.failures.get(host):
                    pipe.hset(_key(host), mapping={"failures": self.failures[host],
                                                   "open_until": self.open_until.get(host, 0)})
                    pipe.expire(_key(host), keep)
                else:
                    pipe.delete(_key(host))
            pipe.execute()
        except Exception:
            logger.warning("webhook breaker state not saved", exc_info=True)
