"""Settings shared by every environment.

Everything that differs between machines comes from environment variables, so
one image runs everywhere (twelve-factor). Per-environment modules
(``local``, ``test``, ``production``) only change defaults.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

# Every environment variable is read through these typed readers: a bad value
# stops the process with one line naming the variable and the expected form.
from .environment import (
    BROKER_SCHEMES,
    POSTGRES_SCHEMES,
    REDIS_SCHEMES,
    env,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_named_urls,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env("DJANGO_SECRET_KEY", "insecure-development-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)

# Tenants live at <slug>.<PLATFORM_DOMAIN>; the bare domain is the operators'
# (public) host.
PLATFORM_DOMAIN = env("PLATFORM_DOMAIN", "localhost")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", f"{PLATFORM_DOMAIN},.{PLATFORM_DOMAIN}")

# --- applications ---------------------------------------------------------
# Control-plane apps: tables in the public schema of the control database.
SHARED_APPS = [
    # Before django_tenants so that our `create_tenant` (the provisioning
    # service) shadows the library's bare one.
    "apps.tenancy",
    "django_tenants",
    "apps.accounts",
    "apps.observability",
    "apps.http",
    "apps.api",
    "apps.backoffice",
    "apps.partitions",
    "apps.billing",
    "apps.jobs",
    "apps.notifications",
    "apps.ratelimit",
    "apps.caching",
    "apps.flags",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    "django.contrib.postgres",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]
# Tenant apps: tables in every tenant's own schema.
TENANT_APPS = [
    "apps.content",
    "apps.search",
    "apps.analytics",
    "apps.audit",
    "apps.reports",
    "apps.idempotency",
    "apps.outbox",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenancy.Tenant"
TENANT_DOMAIN_MODEL = "tenancy.Domain"
PUBLIC_SCHEMA_NAME = "public"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"
# One `SET search_path` per tenant switch on a connection, not one per cursor.
TENANT_LIMIT_SET_CALLS = True
# Seconds a hostname -> tenant lookup stays in the cache; changes to a tenant
# or a domain delete the entries, so this only bounds memory for idle hosts.
TENANT_CACHE_TIMEOUT = env_int("TENANT_CACHE_TIMEOUT", 3600, minimum=1, unit="seconds")
TENANT_NEGATIVE_CACHE_TIMEOUT = env_int("TENANT_NEGATIVE_CACHE_TIMEOUT", 30, minimum=0, unit="seconds")

AUTH_USER_MODEL = "accounts.User"

MIDDLEWARE = [
    # First, so that every response (probes included) is counted and timed.
    "apps.observability.http_metrics.PrometheusBeforeMiddleware",
    # Probes and scrapes are answered before host validation and tenant
    # resolution: a kubelet calls them by pod IP, and they must not need a DB.
    "apps.observability.middleware.OperationalEndpointsMiddleware",
    "apps.observability.middleware.RequestIdMiddleware",
    # Per-tenant request and error counts for the operator console (in process;
    # a thread flushes them to Redis, so a request never waits on it).
    "apps.backoffice.console.traffic.TenantTrafficMiddleware",
    "apps.ratelimit.shedding.LoadSheddingMiddleware",
    "apps.tenancy.middleware.TenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.observability.middleware.UserContextMiddleware",
    "apps.accounts.middleware.SupportAccessMiddleware",
    # The message storage is made only when a page uses it.
    "apps.observability.lazy_messages.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.http.security.ContentSecurityPolicyMiddleware",
    "apps.observability.http_metrics.PrometheusAfterMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

# --- data tier ------------------------------------------------------------
# The control plane (tenant registry, users, shards, ...) is `default`.
# Tenant schemas live on shards: further aliases `shard_<name>`, each a
# PostgreSQL database that may sit on another server, optionally with a
# streaming replica `shard_<name>_replica` for reads. Which tenant is on which
# shard is data (the Shard and Tenant rows); how to reach a shard is this
# configuration, so a shard can change servers without a code change.
#
#   SHARD_URLS="main=postgres://...,eu2=postgres://..."
#   SHARD_REPLICA_URLS="eu2=postgres://replica-host/..."
#
# With no SHARD_URLS, one shard `main` shares the control database.
DATABASE_URL = env_url("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/saas_platform", schemes=POSTGRES_SCHEMES)
# 10 minutes: each PostgreSQL session builds its catalog cache per tenant
# schema it meets, so a connection recycled every minute rebuilt it for every
# tenant again; with 1,000 tenants that made reads 1.6-2.4x slower at p50
# than over 10 (bin/dev bench ratios). Health checks cost no round trip.
DB_CONN_MAX_AGE = env_int("DB_CONN_MAX_AGE", 600, minimum=0, unit="seconds")
SHARD_CONNECT_TIMEOUT = env_int("SHARD_CONNECT_TIMEOUT", 2, minimum=1, unit="seconds")
SHARD_ALIAS_PREFIX = "shard_"
REPLICA_ALIAS_SUFFIX = "_replica"


def database_config(url: str, *, connect_timeout: int) -> dict:
    config = dj_database_url.parse(url, conn_max_age=DB_CONN_MAX_AGE, conn_health_checks=True)
    # django-tenants' backend, plus errors tagged with their alias and shard
    # servers that just refused a connection failing fast (failover).
    config["ENGINE"] = "apps.tenancy.postgresql_backend"
    # A dead server must fail a request (and /readyz) in seconds, not hang it.
    config.setdefault("OPTIONS", {})["connect_timeout"] = connect_timeout
    # `?pooling=transaction`: the URL reaches PgBouncer in transaction pooling
    # mode, so the tenant's schema is set inside every transaction instead of
    # once per connection (apps.tenancy.pgbouncer_backend). Per URL, so that
    # direct connections keep the cheaper session-level SET.
    pooling = config["OPTIONS"].pop("pooling", None)
    if pooling not in (None, "transaction"):
        raise ImproperlyConfigured(f"{url.split('@')[-1]}: expected pooling=transaction or none, got {pooling!r}")
    if pooling:
        config["ENGINE"] = "apps.tenancy.pgbouncer_backend"
    return config


DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 3, minimum=1, unit="seconds")
DATABASES = {"default": database_config(DATABASE_URL, connect_timeout=DB_CONNECT_TIMEOUT)}
SHARD_URLS = env_named_urls("SHARD_URLS", schemes=POSTGRES_SCHEMES) or {"main": DATABASE_URL}
SHARD_REPLICA_URLS = env_named_urls("SHARD_REPLICA_URLS", schemes=POSTGRES_SCHEMES)
if _unknown := sorted(set(SHARD_REPLICA_URLS) - set(SHARD_URLS)):
    # A replica of a shard that is not configured would never be read.
    raise ImproperlyConfigured(
        f"SHARD_REPLICA_URLS: expected names from SHARD_URLS ({', '.join(SHARD_URLS)}), got {', '.join(_unknown)}"
    )
for _shard, _url in SHARD_URLS.items():
    DATABASES[SHARD_ALIAS_PREFIX + _shard] = database_config(_url, connect_timeout=SHARD_CONNECT_TIMEOUT)
for _shard, _url in SHARD_REPLICA_URLS.items():
    _replica = database_config(_url, connect_timeout=SHARD_CONNECT_TIMEOUT)
    # In tests the replica receives the primary's test database by streaming
    # replication; it must not try to create one itself.
    _replica["TEST"] = {"MIRROR": SHARD_ALIAS_PREFIX + _shard}
    DATABASES[SHARD_ALIAS_PREFIX + _shard + REPLICA_ALIAS_SUFFIX] = _replica
# Tenant moves (apps/tenancy/moves.py). The write freeze is a lease the mover
# renews every third of MOVE_LEASE_SECONDS: a dead mover's tenant opens for
# writes again within that time. After freezing, the mover waits
# MOVE_DRAIN_SECONDS for requests that passed the freeze check to finish, then
# locks every source table in one statement that waits at most
# MOVE_LOCK_TIMEOUT_SECONDS, below PostgreSQL's deadlock_timeout (1 s), so the
# mover, never a client's write, is the side that gives way; it tries
# MOVE_LOCK_ATTEMPTS times. Verification compares checksums per range of
# MOVE_VERIFY_RANGE_ROWS primary-key values. Beat looks for moves whose mover
# stopped heartbeating every MOVE_RECOVERY_SECONDS; schemas no registry entry
# explains are dropped by `shard_orphans --drop` only after ORPHAN_GRACE_HOURS.
MOVE_LEASE_SECONDS = env_float("MOVE_LEASE_SECONDS", 30, minimum=1, unit="seconds")
MOVE_DRAIN_SECONDS = env_float("MOVE_DRAIN_SECONDS", 1, minimum=0, unit="seconds")
MOVE_LOCK_TIMEOUT_SECONDS = env_float("MOVE_LOCK_TIMEOUT_SECONDS", 0.5, minimum=0.05, unit="seconds")
MOVE_LOCK_ATTEMPTS = env_int("MOVE_LOCK_ATTEMPTS", 20, minimum=1)
MOVE_VERIFY_RANGE_ROWS = env_int("MOVE_VERIFY_RANGE_ROWS", 10_000, minimum=1)
MOVE_RECOVERY_SECONDS = env_float("MOVE_RECOVERY_SECONDS", 30, minimum=1, unit="seconds")
ORPHAN_GRACE_HOURS = env_float("ORPHAN_GRACE_HOURS", 24, minimum=0, unit="hours")
# Tenant reads go to a shard's replica when one is configured and this is on.
REPLICA_READS = env_bool("REPLICA_READS", True)
# A replica further behind than this (bytes of WAL), or unreachable, is
# skipped (reads go to the primary); checked every REPLICA_CHECK_SECONDS.
REPLICA_MAX_LAG_BYTES = env_int("REPLICA_MAX_LAG_BYTES", 16 * 1024 * 1024, minimum=0, unit="bytes")
REPLICA_CHECK_SECONDS = env_float("REPLICA_CHECK_SECONDS", 5, minimum=0, unit="seconds")
# A shard primary that refused a connection is presumed down by a process for
# this long: its writes fail at once (503) and its reads go to the replica,
# instead of every request waiting out SHARD_CONNECT_TIMEOUT.
PRIMARY_RECHECK_SECONDS = env_float("PRIMARY_RECHECK_SECONDS", 5, minimum=0, unit="seconds")
# Seconds after a client's write during which its reads stay on the primary.
READ_YOUR_WRITES_SECONDS = env_float("READ_YOUR_WRITES_SECONDS", 5, minimum=0, unit="seconds")
DATABASE_ROUTERS = ["apps.tenancy.routers.ShardRouter"]
# django-tenants' own sync router only knows one database; ours replaces it.
TENANT_SYNC_ROUTER = "apps.tenancy.routers.ShardRouter"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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

# Sessions are control-plane rows; a session cookie is scoped to the host that
# issued it, and tenant admin access is re-checked against memberships.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- tasks ----------------------------------------------------------------
# Redis is the default broker; RabbitMQ by setting CELERY_BROKER_URL=amqp://...
# (queues are then declared as quorum queues: replicated, durable).
CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", REDIS_URL, schemes=BROKER_SCHEMES)
BROKER_IS_AMQP = CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# At-least-once: a message is acknowledged after its task finished, and a
# message whose worker process died goes back to the queue.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message reserved per worker process: a long export does not sit on
# messages that another process could run.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis redelivers an unacknowledged message after the visibility timeout.
# Workers re-stamp the messages they hold every timeout / 5 (a heartbeat,
# apps.jobs.heartbeat), so a live task of any length is never redelivered
# and the timeout only bounds how long a dead worker's tasks wait: 5 minutes
# (4-5 minutes from the kill to running again). RabbitMQ redelivers as soon
# as the connection drops.
# Workers look for such expired messages every unacked_restore_interval
# seconds (kombu's default would be every 100 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 300, minimum=1, unit="seconds"),
    "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL", 10, minimum=1, unit="seconds"),
    "unacked_restore_throttle": 1,
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
}
if BROKER_IS_AMQP:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "default"
TASK_QUEUES = ["default", "emails", "exports", "search", "maintenance"]
CELERY_TASK_ROUTES = {
    "notifications.*": {"queue": "emails"},
    "reports.*": {"queue": "exports"},
    "search.*": {"queue": "search"},
    "partitions.*": {"queue": "maintenance"},
    "outbox.*": {"queue": "maintenance"},
    "idempotency.*": {"queue": "maintenance"},
}
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BEAT_SCHEDULE: dict = {
    "maintain-partitions": {"task": "partitions.maintain", "schedule": 6 * 3600},
    "sweep-outboxes": {"task": "outbox.sweep", "schedule": env_float("OUTBOX_SWEEP_SECONDS", 15, minimum=0.1, unit="seconds")},
    "purge-idempotency-keys": {"task": "idempotency.purge", "schedule": 3600},
    "purge-outboxes": {"task": "outbox.purge", "schedule": 3600},
}
# An outbox row still unsent this long after its commit is sent by the sweep.
OUTBOX_SWEEP_AFTER_SECONDS = env_int("OUTBOX_SWEEP_AFTER_SECONDS", 10, minimum=0, unit="seconds")
OUTBOX_SWEEP_BATCH = env_int("OUTBOX_SWEEP_BATCH", 50, minimum=1)
# Publishing runs on a background thread per process with a broker connection
# of its own: short timeouts and no retries, because a row that cannot be sent
# now waits for the sweep; after a failure the thread leaves new rows to the
# sweep for OUTBOX_RELAY_PAUSE_SECONDS instead of waiting on a dead broker
# once per row. A full hand-off queue also leaves rows to the sweep.
OUTBOX_PUBLISH_TIMEOUT_SECONDS = env_float("OUTBOX_PUBLISH_TIMEOUT_SECONDS", 1.0, minimum=0.05, unit="seconds")
OUTBOX_RELAY_PAUSE_SECONDS = env_float("OUTBOX_RELAY_PAUSE_SECONDS", 5.0, minimum=0, unit="seconds")
OUTBOX_RELAY_QUEUE_SIZE = env_int("OUTBOX_RELAY_QUEUE_SIZE", 1000, minimum=1)
# A relay's claim on rows it is publishing; longer than a batch takes to send.
OUTBOX_CLAIM_SECONDS = env_int("OUTBOX_CLAIM_SECONDS", 30, minimum=1, unit="seconds")
# Sent rows are kept this long (to answer "was it sent?"), then purged hourly
# in batches of OUTBOX_PURGE_BATCH rows; the table would grow forever otherwise.
OUTBOX_RETENTION_SECONDS = env_int("OUTBOX_RETENTION_SECONDS", 7 * 24 * 3600, minimum=0, unit="seconds")
OUTBOX_PURGE_BATCH = env_int("OUTBOX_PURGE_BATCH", 5000, minimum=1)
# Lease of a once-only effect's runner, renewed while it runs: a runner that
# died blocks redeliveries of its effect for at most this long.
EFFECT_CLAIM_SECONDS = env_int("EFFECT_CLAIM_SECONDS", 10, minimum=1, unit="seconds")
# Range-partitioned (by month) tenant tables, maintained by apps.partitions.
PARTITIONED_TABLES = ["audit_entry", "analytics_event"]
PARTITION_MONTHS_AHEAD = env_int("PARTITION_MONTHS_AHEAD", 3, minimum=1, unit="months")
PARTITION_RETENTION_MONTHS = env_int("PARTITION_RETENTION_MONTHS", 13, minimum=1, unit="months")
# Partition DDL waits at most this long for its locks, then that schema is
# reported failed and retried next run, instead of queueing every writer behind it.
PARTITION_LOCK_TIMEOUT_SECONDS = env_float("PARTITION_LOCK_TIMEOUT_SECONDS", 5, minimum=0.1, unit="seconds")

# --- email -----------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 1025, minimum=1)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1, unit="seconds")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "SaaS Platform <no-reply@saas-platform.dev>")
# Circuit breaker around the email provider: open after this many failures in
# a row, probe again after this many seconds.
EMAIL_BREAKER_FAIL_MAX = env_int("EMAIL_BREAKER_FAIL_MAX", 5, minimum=1)
EMAIL_BREAKER_RESET_SECONDS = env_int("EMAIL_BREAKER_RESET_SECONDS", 60, minimum=1, unit="seconds")
EMAIL_MAX_RETRIES = env_int("EMAIL_MAX_RETRIES", 8, minimum=0)
BREAKER_NAMESPACE = env("BREAKER_NAMESPACE", "breaker")

# --- exports ---------------------------------------------------------------
EXPORT_DOWNLOAD_SECONDS = env_int("EXPORT_DOWNLOAD_SECONDS", 24 * 3600, minimum=1, unit="seconds")
# A running export beats at least this often while it makes progress; one
# silent for EXPORT_STALL_SECONDS shows as stalled (its worker likely died;
# the broker hands it to another worker, see CELERY_VISIBILITY_TIMEOUT).
EXPORT_HEARTBEAT_SECONDS = env_int("EXPORT_HEARTBEAT_SECONDS", 15, minimum=1, unit="seconds")
EXPORT_STALL_SECONDS = env_int("EXPORT_STALL_SECONDS", 120, minimum=1, unit="seconds")
MEDIA_ROOT = env("MEDIA_ROOT", str(BASE_DIR / "var" / "media"))

# --- i18n / static --------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Admin assets served by the web process itself (whitenoise); no separate
    # static server is needed for the operator UI.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- API ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.api.authentication.BearerAuthentication",
        "apps.api.authentication.TenantSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.api.permissions.TenantRole"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.api.parsers.BoundedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "apps.api.pagination.TenantCursorPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.http.problems.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SaaS platform tenant API",
    "DESCRIPTION": (
        "The API of one tenant, served on the tenant's host under /api/v1/. Authenticate with "
        "`Authorization: Bearer <API key or token>` (POST /api/v1/auth/token gives a token for a member's "
        "email and password). Errors are RFC 9457 problem details. POST accepts an `Idempotency-Key` header."
    ),
    "VERSION": "1.0.0",
    # 3.1 (JSON Schema 2020-12) can say what a free-form JSON object may hold
    # (propertyNames); 3.0 cannot.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH bodies are validated as declared (optional fields say so), not
    # as "everything optional", which is what a split PATCH component claims.
    "COMPONENT_SPLIT_PATCH": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.api.schema.document_problem_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "DocumentStatusEnum": "apps.content.models.Document.Status",
        "MemberRoleEnum": "apps.accounts.models.Membership.Role",
        "ExportStatusEnum": "apps.reports.models.ExportRequest.Status",
    },
}
# Bulk requests (500 documents, 1,000 events) fit; larger bodies get 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024, minimum=1, unit="bytes")
IDEMPOTENCY_KEY_SECONDS = 24 * 3600

# --- rate limits, caching, load shedding ----------------------------------
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
CELERY_BEAT_SCHEDULE["sweep-cache-invalidations"] = {"task": "caching.sweep_invalidations",
                                                     "schedule": CACHE_INVALIDATION_SWEEP_SECONDS}
CELERY_TASK_ROUTES["caching.*"] = {"queue": "maintenance"}
# A move whose mover died is rolled back (before its switch) or finished (after).
CELERY_BEAT_SCHEDULE["recover-moves"] = {"task": "tenancy.recover_moves", "schedule": MOVE_RECOVERY_SECONDS}
CELERY_TASK_ROUTES["tenancy.*"] = {"queue": "maintenance"}
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

# --- accounts -------------------------------------------------------------
USER_TOKEN_SECONDS = env_int("USER_TOKEN_SECONDS", 12 * 3600, minimum=1, unit="seconds")
INVITATION_SECONDS = env_int("INVITATION_SECONDS", 7 * 24 * 3600, minimum=1, unit="seconds")
# Links in emails (invitations, password resets, export downloads): scheme,
# host and port as people reach a tenant; {host} is the tenant's primary host.
TENANT_BASE_URL = env("TENANT_BASE_URL", "https://{host}")
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600, minimum=60, unit="seconds")

# --- observability --------------------------------------------------------
PROMETHEUS_EXPORT_MIGRATIONS = False
# /metrics, and the detail of /readyz, answer only on the internal listener
# (gunicorn also binds OPS_PORT when it is set; no ingress or load balancer
# routes to it) or to `Authorization: Bearer <OPS_TOKEN>`. Everyone else gets
# 404 for /metrics and a bare status from /readyz.
OPS_PORT = env_int("OPS_PORT", 0, minimum=0) or None
OPS_TOKEN = env("OPS_TOKEN", "")
# Celery workers and beat serve their own /metrics on this port (0: off), so
# task outcomes are counted where tasks run and a missing process is a
# missing scrape target (apps/jobs/metrics.py).
CELERY_METRICS_PORT = env_int("CELERY_METRICS_PORT", 0, minimum=0)
CELERY_METRICS_BIND = env("CELERY_METRICS_BIND", "0.0.0.0")
# Scrape-time readings of queues, outboxes, shards and partitions
# (apps/observability/collectors.py): each server gets this long per reading,
# a reading is reused this long, and tenant outboxes are read over at most
# this many schemas per shard, so a scrape stays cheap with many tenants.
METRICS_TIMEOUT_SECONDS = env_float("METRICS_TIMEOUT_SECONDS", 1.0, minimum=0.05, unit="seconds")
METRICS_CACHE_SECONDS = env_float("METRICS_CACHE_SECONDS", 5.0, minimum=0, unit="seconds")
METRICS_TENANT_SCHEMAS_PER_SHARD = env_int("METRICS_TENANT_SCHEMAS_PER_SHARD", 500, minimum=1)
# Operator console (apps/backoffice/console): how long the overview waits for
# all its readings together, and the per-tenant traffic counter's bound on
# each Redis call and its pause after a failure (requests never wait on it).
CONSOLE_READ_TIMEOUT_SECONDS = env_float("CONSOLE_READ_TIMEOUT_SECONDS", 3.0, minimum=0.1, unit="seconds")
# Per-tenant traffic counters (operator console): gathered in process, flushed by a thread.
TRAFFIC_FLUSH_SECONDS = env_float("TRAFFIC_FLUSH_SECONDS", 2.0, minimum=0.1, unit="seconds")
TRAFFIC_REDIS_TIMEOUT_SECONDS = env_float("TRAFFIC_REDIS_TIMEOUT_SECONDS", 0.5, minimum=0.005, unit="seconds")
TRAFFIC_RETRY_SECONDS = env_float("TRAFFIC_RETRY_SECONDS", 5.0, minimum=0, unit="seconds")
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", LOG_LEVELS)
LOG_FORMAT = env_choice("LOG_FORMAT", "json", ["json", "console"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "apps.observability.logging.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "apps.observability.logging.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "console": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(tenant)s] %(message)s",
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
        "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}

# --- tracing --------------------------------------------------------------
# OpenTelemetry traces from a request through the outbox to the task it
# caused (apps/observability/tracing.py), set by the standard OTEL_*
# variables. Off unless configured, and when off nothing is instrumented or
# even imported. The rule:
#   * OTEL_SDK_DISABLED=true: off, whatever else is set;
#   * OTEL_TRACES_EXPORTER=none: off;
#   * on when OTEL_TRACES_EXPORTER names an exporter, or an OTLP endpoint is
#     set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
#     or OTEL_SDK_DISABLED=false is set explicitly;
#   * otherwise off (the SDK alone would export to localhost:4318 by default).
# Exporters (OTEL_TRACES_EXPORTER, comma-separated, default otlp): otlp (OTLP
# over HTTP/protobuf; endpoint, headers, timeout and compression from the
# OTEL_EXPORTER_OTLP_* variables, batching from OTEL_BSP_*), console.
# Sampling: OTEL_TRACES_SAMPLER (default parentbased_traceidratio) with the
# ratio in OTEL_TRACES_SAMPLER_ARG (default 1.0: every trace).
# OTEL_SERVICE_NAME names the service (default saas-platform-web, -worker, -beat).
from .environment import missing as _missing  # noqa: E402

TRACING_EXPORTER_CHOICES = ("otlp", "otlp_proto_http", "console", "none")
TRACING_SAMPLERS = ("parentbased_traceidratio", "parentbased_always_on", "parentbased_always_off",
                    "traceidratio", "always_on", "always_off")
_otel_exporters = env_list("OTEL_TRACES_EXPORTER")
for _name in _otel_exporters:
    if _name not in TRACING_EXPORTER_CHOICES:
        raise ImproperlyConfigured(f"OTEL_TRACES_EXPORTER: expected a comma-separated list of "
                                   f"{', '.join(TRACING_EXPORTER_CHOICES)}, got {_name!r}")
_otlp_endpoints = [env_url(name, "", schemes=("http", "https"))
                   for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
for _name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
    env_choice(_name, "http/protobuf", ["http/protobuf"])  # the one OTLP transport installed
_sdk_disabled = env_bool("OTEL_SDK_DISABLED", False)
TRACING_ENABLED = not _sdk_disabled and (
    any(name != "none" for name in _otel_exporters)
    or (not _otel_exporters and (any(_otlp_endpoints) or not _missing(["OTEL_SDK_DISABLED"])))
)
TRACING_EXPORTERS = [name for name in _otel_exporters or ["otlp"] if name != "none"] if TRACING_ENABLED else []
TRACING_SAMPLER = env_choice("OTEL_TRACES_SAMPLER", "parentbased_traceidratio", TRACING_SAMPLERS)
TRACING_SAMPLER_RATIO = env_float("OTEL_TRACES_SAMPLER_ARG", 1.0, minimum=0)
if TRACING_SAMPLER_RATIO > 1:
    raise ImproperlyConfigured(f"OTEL_TRACES_SAMPLER_ARG: expected a ratio from 0 to 1, got {TRACING_SAMPLER_RATIO:g}")
TRACING_SERVICE_NAME = env("OTEL_SERVICE_NAME")
# Exporters by dotted path that export each span as it ends (no batching):
# for tests, which read what a process traced (config/settings/test.py).
TRACING_SYNC_EXPORTERS: list[str] = []
