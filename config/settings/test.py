"""Test suite: the same real services as production, faster hashing."""

from .base import *  # noqa: F403
from .base import CACHES, LOG_LEVELS, env, env_bool, env_choice, env_float, env_int

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Each test run keeps its cache entries apart from a developer's running platform.
CACHES["default"]["KEY_PREFIX"] = env("CACHE_KEY_PREFIX", "saas-test")
LOG_LEVEL = env_choice("LOG_LEVEL", "WARNING", LOG_LEVELS)
LOGGING["root"]["level"] = LOG_LEVEL  # noqa: F405
# Most tests run inside a transaction that a replica cannot see; the tests
# of replica routing switch this on and use committed data (the processes
# that fault tests start, through the environment).
REPLICA_READS = env_bool("REPLICA_READS", False)
# This process opens every alias for each database test: a remembered
# refused connect (a timeout on a loaded machine) would fail the next tests
# for seconds. The fault tests that exercise it set it themselves.
PRIMARY_RECHECK_SECONDS = env_float("PRIMARY_RECHECK_SECONDS", 0, minimum=0, unit="seconds")

# Messages sent by tests go to their own Redis database, never to a running
# platform's queues; worker processes started by tests use the same. bin/dev
# gives each checkout's suite its own, so two checkouts' test runs do not
# take each other's messages either (15 when started without it).
TEST_BROKER_REDIS_DB = env_int("TEST_BROKER_REDIS_DB", 15, minimum=0)
if not env("CELERY_BROKER_URL"):
    from urllib.parse import urlsplit, urlunsplit

    _broker = urlsplit(REDIS_URL)  # noqa: F405
    CELERY_BROKER_URL = urlunsplit(_broker._replace(path=f"/{TEST_BROKER_REDIS_DB}"))
BREAKER_NAMESPACE = env("BREAKER_NAMESPACE", "test-breaker")
OPS_TOKEN = env("OPS_TOKEN", "test-ops-token")
RATE_LIMIT_PREFIX = env("RATE_LIMIT_PREFIX", "test-rl")
# Processes that tests start (a Celery worker) write their spans to this file,
# one JSON object a line, for the test to read (tests/span_file.py).
TRACING_SPAN_FILE = env("TRACING_SPAN_FILE")
if TRACING_SPAN_FILE:
    TRACING_ENABLED = True
    TRACING_SYNC_EXPORTERS = ["tests.span_file.JsonLinesSpanExporter"]
# Tests deliver webhooks to receivers they start on loopback, over http.
# (Production refuses both; the tests of destination safety switch them off.)
WEBHOOKS_ALLOW_LOOPBACK = env_bool("WEBHOOKS_ALLOW_LOOPBACK", True)
WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", True)
