"""Circuit breakers around outside services, with their state in Redis so
that every worker process sees the same circuit.

pybreaker provides the state machine (closed -> open after ``fail_max``
failures in a row -> half-open after ``reset_timeout`` -> closed on a
successful probe); its Redis storage shares the state.
"""

from __future__ import annotations

from functools import cache

import pybreaker
from django.conf import settings

from apps.caching.connections import redis_client

STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


class StateMetric(pybreaker.CircuitBreakerListener):
    """Publishes each circuit's state as the saas_circuit_breaker_state gauge."""

    def state_change(self, cb, old_state, new_state) -> None:
        from apps.observability import metrics

        metrics.breaker_state.labels(name=cb.name).set(STATE_VALUES.get(new_state.name, 0))


@cache
def breaker(name: str, *, fail_max: int, reset_seconds: int) -> pybreaker.CircuitBreaker:
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, redis_client(),
                                            namespace=f"{settings.BREAKER_NAMESPACE}:{name}")
    return pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_seconds, state_storage=storage,
                                    name=name, listeners=[StateMetric()])


def email_breaker() -> pybreaker.CircuitBreaker:
    return breaker("email", fail_max=settings.EMAIL_BREAKER_FAIL_MAX,
                   reset_seconds=settings.EMAIL_BREAKER_RESET_SECONDS)
