"""Redis: the cache, its health probes and pushed invalidations."""

from __future__ import annotations

from .environment import REDIS_SCHEMES, env, env_bool, env_float, env_int, env_url

# Broker and cache unless CELERY_BROKER_URL says otherwise. bin/dev passes one
# with a database of each checkout's own, so two checkouts on one Redis never
# share a queue or a cache entry.
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=REDIS_SCHEMES)
REDIS_TIMEOUT_SECONDS = env_float("REDIS_TIMEOUT_SECONDS", 0.5, minimum=0.01, unit="seconds")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", "saas"),
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": REDIS_TIMEOUT_SECONDS,
            "SOCKET_TIMEOUT": REDIS_TIMEOUT_SECONDS,
            # The cache is an optimisation: when Redis is down, reads miss and
            # writes are dropped instead of failing the request.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "apps.observability.cache"
CACHE_DEFAULT_SECONDS = env_int("CACHE_DEFAULT_SECONDS", 300, minimum=0, unit="seconds")
TENANT_CACHE_ENABLED = env_bool("TENANT_CACHE_ENABLED", True)
# Each process probes Redis this often with this (shorter) timeout, so an
# outage that makes a request's invalidation time out is seen by every process
# (keep interval + 2 x timeout <= REDIS_TIMEOUT_SECONDS; apps/caching/health.py).
REDIS_HEALTH_INTERVAL_SECONDS = env_float("REDIS_HEALTH_INTERVAL_SECONDS", 0.15, minimum=0.01, unit="seconds")
REDIS_HEALTH_TIMEOUT_SECONDS = env_float("REDIS_HEALTH_TIMEOUT_SECONDS", 0.15, minimum=0.01, unit="seconds")
# Versions (host, tenant access, plans) and read-your-writes marks are held in
# process and dropped when Redis pushes their names (apps/caching/pushed.py), so
# a warm request makes no round trip for them. The push connection is pinged
# this often and given up (held values dropped, round trips again) when silent
# this long.
PUSH_INVALIDATION = env_bool("PUSH_INVALIDATION", True)
PUSH_PING_SECONDS = env_float("PUSH_PING_SECONDS", 0.25, minimum=0.01, unit="seconds")
PUSH_SILENCE_SECONDS = env_float("PUSH_SILENCE_SECONDS", 1.0, minimum=0.05, unit="seconds")
# Invalidations that could not reach Redis are recorded and re-applied this often.
CACHE_INVALIDATION_SWEEP_SECONDS = env_float("CACHE_INVALIDATION_SWEEP_SECONDS", 5, minimum=0.5, unit="seconds")
