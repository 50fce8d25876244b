"""Rate limits per tenant, key and address, and load shedding."""

from __future__ import annotations

from .environment import env, env_bool, env_float, env_int, env_list

# --- rate limits, load shedding -------------------------------------------
RATE_LIMIT_PREFIX = env("RATE_LIMIT_PREFIX", "rl")
# An API key may use this share of its tenant's per-minute limit.
RATE_LIMIT_KEY_SHARE = env_float("RATE_LIMIT_KEY_SHARE", 0.5, minimum=0)
# Expensive endpoints: their own lower limit, a share of the tenant's.
RATE_LIMIT_SCOPES = {"search": 0.25, "exports": 0.02, "bulk": 0.05}
# Callers without credentials (token exchange, invitation acceptance, signed
# download links) have budgets of their own, so a stranger who knows a
# tenant's host cannot spend its members' requests: the tenant's anonymous
# bucket (a share of the plan's rate) and one per client address.
RATE_LIMIT_ANON_SHARE = env_float("RATE_LIMIT_ANON_SHARE", 0.5, minimum=0)
RATE_LIMIT_ANON_ADDRESS_PER_MINUTE = env_int("RATE_LIMIT_ANON_ADDRESS_PER_MINUTE", 30, minimum=1)
# Password guesses: after this many attempts per account (any tenant) or per
# address and tenant, each further attempt waits 1 s, 2 s, 4 s ... up to the
# maximum; counts are forgotten a window after the last attempt.
RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT = env_int("RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT", 5, minimum=1)
RATE_LIMIT_PASSWORD_FAILURES_PER_ADDRESS = env_int("RATE_LIMIT_PASSWORD_FAILURES_PER_ADDRESS", 20, minimum=1)
RATE_LIMIT_PASSWORD_LOCKOUT_MAX_SECONDS = env_int("RATE_LIMIT_PASSWORD_LOCKOUT_MAX_SECONDS", 900, minimum=1,
                                                  unit="seconds")
RATE_LIMIT_PASSWORD_WINDOW_SECONDS = env_int("RATE_LIMIT_PASSWORD_WINDOW_SECONDS", 3600, minimum=1, unit="seconds")
# After a Redis error, limits use in-process buckets this long before Redis
# is tried again: a hung Redis costs one timeout per process and period.
RATE_LIMIT_REDIS_RETRY_SECONDS = env_float("RATE_LIMIT_REDIS_RETRY_SECONDS", 2.0, minimum=0, unit="seconds")
# Load balancers (CIDRs) whose X-Forwarded-For is believed when choosing the
# client address of per-address limits; the header of anyone else is
# ignored, as a client can write whatever it likes there.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", "")
SHED_ENABLED = env_bool("SHED_ENABLED", True)
# Shedding acts on overload, not on busy threads (apps/ratelimit/shedding.py):
# only while the shortest wait for a thread over a whole interval stays above
# the target (CoDel's defaults are 5 ms / 100 ms; the GIL hands a thread over
# in up to 5 ms steps, hence a wider target). Low then normal priority are
# capped, never below SHED_MIN_CONCURRENCY per process, and uncapped again
# once a cap climbs above SHED_CAPACITY (the threads of a worker).
SHED_TARGET_MS = env_float("SHED_TARGET_MS", 20, minimum=1, unit="milliseconds")
SHED_INTERVAL_MS = env_float("SHED_INTERVAL_MS", 100, minimum=10, unit="milliseconds")
SHED_CAPACITY = env_int("SHED_CAPACITY", env_int("GUNICORN_THREADS", 8, minimum=1), minimum=1)
SHED_MIN_CONCURRENCY = env_int("SHED_MIN_CONCURRENCY", 1, minimum=1)
