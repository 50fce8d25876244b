"""Password guesses: limited per account and per client address, with
growing delays.

Every attempt is counted when it starts, in the same atomic step that
checks the lockouts (a Lua script), so a burst of parallel guesses cannot
all slip in before the first failure is written. After ``free`` counted
attempts, each further one locks the key for 1 s, 2 s, 4 s ... up to
RATE_LIMIT_PASSWORD_LOCKOUT_MAX_SECONDS; an attempt during a lockout is
refused with 429 and Retry-After, without checking the password and
without being counted (so hammering does not extend a legitimate user's
wait). A correct password clears the account's count and gives back this
attempt's address count; a wrong one stays counted.

Keys: the account is the normalised email (hashed; the same for existing
and unknown accounts, so the answers reveal nothing about existence) and
is global, as the account is; the address count is per tenant, so one
tenant's callers behind a shared address do not lock out another's.
Counts are forgotten RATE_LIMIT_PASSWORD_WINDOW_SECONDS after the last
attempt.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.exceptions import PermissionDenied
from rest_framework import exceptions

from apps.caching.connections import redis_client
from apps.observability import metrics

from .buckets import redis_or_local
from .clients import address_key
from .selectors import tenant_rate_limit

BASE_DELAY_SECONDS = 1
# A failed guess: the password check said no (whatever the reason).
REFUSALS = (PermissionDenied, exceptions.PermissionDenied, exceptions.AuthenticationFailed)

# KEYS: account, address. ARGV: mode ("begin" | "succeed" | "release"),
# base delay, longest delay, window seconds, then each key's free attempts.
# State per key: n (counted attempts), until (locked until, Redis time).
ATTEMPTS = """
local mode = ARGV[1]
local base = tonumber(ARGV[2])
local longest = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if mode == 'begin' then
  local wait = 0
  for i, key in ipairs(KEYS) do
    local locked = tonumber(redis.call('HGET', key, 'until') or '0')
    if locked > now then
      wait = math.max(wait, locked - now)
    end
  end
  if wait > 0 then
    return {0, tostring(wait)}
  end
  for i, key in ipairs(KEYS) do
    local free = tonumber(ARGV[4 + i])
    local n = redis.call('HINCRBY', key, 'n', 1)
    local ttl = window
    if n >= free then
      local delay = math.min(longest, base * 2 ^ (n - free))
      redis.call('HSET', key, 'until', tostring(now + delay))
      ttl = math.max(ttl, math.ceil(delay))
    end
    redis.call('EXPIRE', key, ttl)
  end
  return {1, '0'}
end
for i, key in ipairs(KEYS) do
  if mode == 'succeed' and i == 1 then
    redis.call('DEL', key)
  else
    local n = redis.call('HINCRBY', key, 'n', -1)
    if n <= 0 then
      redis.call('DEL', key)
    elseif n < tonumber(ARGV[4 + i]) then
      redis.call('HDEL', key, 'until')
    end
  end
end
return {1, '0'}
"""


class TooManyAttempts(exceptions.Throttled):
    default_detail = "Too many failed sign-in attempts."
    default_code = "too-many-attempts"


@dataclass(frozen=True)
class Attempt:
    keys: tuple[str, str]  # account, address


def _attempt(request, email: str) -> Attempt:
    account = hashlib.sha256((email or "").strip().lower().encode()).hexdigest()[:32]
    tenant = request.tenant
    return Attempt(keys=(f"pw:acct:{account}", f"pw:t:{tenant.pk}:ip:{address_key(request)}"))


def _frees() -> tuple[int, int]:
    return settings.RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT, settings.RATE_LIMIT_PASSWORD_FAILURES_PER_ADDRESS


@cache
def _script(url: str):
    return redis_client(url).register_script(ATTEMPTS)


class LocalAttempts:
    """The fallback when Redis is unreachable: the same rules in this
    process's memory (each worker process counts on its own)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict[str, list[float]] = {}  # key -> [n, locked until, expires]

    def run(self, mode: str, keys: tuple[str, ...], frees: tuple[int, ...]) -> float:
        now = time.monotonic()
        window = settings.RATE_LIMIT_PASSWORD_WINDOW_SECONDS
        longest = settings.RATE_LIMIT_PASSWORD_LOCKOUT_MAX_SECONDS
        with self._lock:
            if len(self._state) > 100_000:
                self._state.clear()
            states = []
            for key in keys:
                state = self._state.get(key)
                if state is None or state[2] <= now:
                    state = self._state[key] = [0, 0.0, now + window]
                states.append(state)
            if mode == "begin":
                wait = max(state[1] - now for state in states)
                if wait > 0:
                    return wait
                for state, free in zip(states, frees, strict=True):
                    state[0] += 1
                    delay = min(longest, BASE_DELAY_SECONDS * 2 ** min(state[0] - free, 40)) if state[0] >= free else 0
                    state[1] = now + delay if delay else state[1]
                    state[2] = now + max(window, delay)
                return 0.0
            for index, (key, state, free) in enumerate(zip(keys, states, frees, strict=True)):
                state[0] = 0 if mode == "succeed" and index == 0 else state[0] - 1
                if state[0] <= 0:
                    del self._state[key]
                elif state[0] < free:
                    state[1] = 0.0
            return 0.0


local_attempts = LocalAttempts()


def _run(mode: str, attempt: Attempt) -> float:
    """Seconds the attempt must wait (0: go ahead)."""
    frees = _frees()
    keys = [f"{settings.RATE_LIMIT_PREFIX}:{key}" for key in attempt.keys]

    def remote(url: str) -> float:
        allowed, wait = _script(url)(keys=keys, args=[
            mode, BASE_DELAY_SECONDS, settings.RATE_LIMIT_PASSWORD_LOCKOUT_MAX_SECONDS,
            settings.RATE_LIMIT_PASSWORD_WINDOW_SECONDS, *frees])
        return 0.0 if allowed else float(wait)

    return redis_or_local(remote, lambda: local_attempts.run(mode, attempt.keys, frees))


def begin(request, *, email: str) -> Attempt:
    """Count a password attempt for ``email`` from the caller's address, or
    raise TooManyAttempts (429 with Retry-After) while either is locked."""
    attempt = _attempt(request, email)
    wait = _run("begin", attempt)
    if wait > 0:
        plan_code, _ = tenant_rate_limit(request.tenant)
        metrics.rate_limited.labels(tier=plan_code, scope="password").inc()
        raise TooManyAttempts(wait=math.ceil(wait))
    return attempt


def succeed(attempt: Attempt) -> None:
    """The password was right: the account starts afresh."""
    _run("succeed", attempt)


def release(attempt: Attempt) -> None:
    """The attempt ended without an answer on the password (an error): uncount it."""
    _run("release", attempt)


@contextmanager
def guarded(request, *, email: str):
    """Run a password check as one counted attempt: TooManyAttempts while
    locked; a refusal (PermissionDenied) from the body is a failed guess and stays
    counted; success resets the account; any other error uncounts it."""
    attempt = begin(request, email=email)
    try:
        yield attempt
    except REFUSALS:
        raise
    except BaseException:
        release(attempt)
        raise
    succeed(attempt)
