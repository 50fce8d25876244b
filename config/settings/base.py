"""Settings shared by every environment.

Everything that differs between machines comes from environment variables, so
one image runs everywhere (twelve-factor). Per-environment modules
(``local``, ``test``, ``production``) only change defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


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
TENANT_CACHE_TIMEOUT = int(env("TENANT_CACHE_TIMEOUT", "3600"))
TENANT_NEGATIVE_CACHE_TIMEOUT = int(env("TENANT_NEGATIVE_CACHE_TIMEOUT", "30"))

AUTH_USER_MODEL = "accounts.User"

MIDDLEWARE = [
    # First, so that every response (probes included) is counted and timed.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Probes and scrapes are answered before host validation and tenant
    # resolution: a kubelet calls them by pod IP, and they must not need a DB.
    "apps.observability.middleware.OperationalEndpointsMiddleware",
    "apps.observability.middleware.RequestIdMiddleware",
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
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.api.security.ContentSecurityPolicyMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
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
DATABASE_URL = env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/saas_platform")
DB_CONN_MAX_AGE = int(env("DB_CONN_MAX_AGE", "60"))
SHARD_CONNECT_TIMEOUT = int(env("SHARD_CONNECT_TIMEOUT", "2"))
SHARD_ALIAS_PREFIX = "shard_"
REPLICA_ALIAS_SUFFIX = "_replica"


def parse_named_urls(value: str | None) -> dict[str, str]:
    named = {}
    for item in (value or "").split(","):
        if item.strip():
            name, _, url = item.strip().partition("=")
            named[name.strip()] = url.strip()
    return named


def database_config(url: str, *, connect_timeout: int) -> dict:
    config = dj_database_url.parse(url, conn_max_age=DB_CONN_MAX_AGE, conn_health_checks=True)
    config["ENGINE"] = "django_tenants.postgresql_backend"
    # A dead server must fail a request (and /readyz) in seconds, not hang it.
    config.setdefault("OPTIONS", {})["connect_timeout"] = connect_timeout
    return config


DATABASES = {"default": database_config(DATABASE_URL, connect_timeout=int(env("DB_CONNECT_TIMEOUT", "3")))}
SHARD_URLS = parse_named_urls(env("SHARD_URLS")) or {"main": DATABASE_URL}
SHARD_REPLICA_URLS = parse_named_urls(env("SHARD_REPLICA_URLS"))
for _shard, _url in SHARD_URLS.items():
    DATABASES[SHARD_ALIAS_PREFIX + _shard] = database_config(_url, connect_timeout=SHARD_CONNECT_TIMEOUT)
for _shard, _url in SHARD_REPLICA_URLS.items():
    _replica = database_config(_url, connect_timeout=SHARD_CONNECT_TIMEOUT)
    # In tests the replica receives the primary's test database by streaming
    # replication; it must not try to create one itself.
    _replica["TEST"] = {"MIRROR": SHARD_ALIAS_PREFIX + _shard}
    DATABASES[SHARD_ALIAS_PREFIX + _shard + REPLICA_ALIAS_SUFFIX] = _replica
# Tenant reads go to a shard's replica when one is configured and this is on.
REPLICA_READS = env_bool("REPLICA_READS", True)
# A replica further behind than this (bytes of WAL), or unreachable, is
# skipped (reads go to the primary); checked every REPLICA_CHECK_SECONDS.
REPLICA_MAX_LAG_BYTES = int(env("REPLICA_MAX_LAG_BYTES", str(16 * 1024 * 1024)))
REPLICA_CHECK_SECONDS = float(env("REPLICA_CHECK_SECONDS", "5"))
# Seconds after a client's write during which its reads stay on the primary.
READ_YOUR_WRITES_SECONDS = float(env("READ_YOUR_WRITES_SECONDS", "5"))
DATABASE_ROUTERS = ["apps.tenancy.routers.ShardRouter"]
# django-tenants' own sync router only knows one database; ours replaces it.
TENANT_SYNC_ROUTER = "apps.tenancy.routers.ShardRouter"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_TIMEOUT_SECONDS = float(env("REDIS_TIMEOUT_SECONDS", "0.5"))
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
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
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
# Redis redelivers an unacknowledged message after the visibility timeout,
# so it must exceed the longest task (a large export): 2 hours. A worker that
# dies therefore delays its task's redelivery by up to this long on Redis;
# RabbitMQ redelivers as soon as the connection drops.
# Workers look for such expired messages every unacked_restore_interval
# seconds (kombu's default would be every 100 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(env("CELERY_VISIBILITY_TIMEOUT", str(2 * 3600))),
    "unacked_restore_interval": int(env("CELERY_UNACKED_RESTORE_INTERVAL", "10")),
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
    "sweep-outboxes": {"task": "outbox.sweep", "schedule": float(env("OUTBOX_SWEEP_SECONDS", "15"))},
    "purge-idempotency-keys": {"task": "idempotency.purge", "schedule": 3600},
}
# An outbox row still unsent this long after its commit is sent by the sweep.
OUTBOX_SWEEP_AFTER_SECONDS = int(env("OUTBOX_SWEEP_AFTER_SECONDS", "10"))
OUTBOX_SWEEP_BATCH = int(env("OUTBOX_SWEEP_BATCH", "50"))
# Range-partitioned (by month) tenant tables, maintained by apps.partitions.
PARTITIONED_TABLES = ["audit_entry", "analytics_event"]
PARTITION_MONTHS_AHEAD = int(env("PARTITION_MONTHS_AHEAD", "3"))
PARTITION_RETENTION_MONTHS = int(env("PARTITION_RETENTION_MONTHS", "13"))

# --- email -----------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = int(env("EMAIL_PORT", "1025"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = int(env("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "SaaS Platform <no-reply@saas-platform.dev>")
# Circuit breaker around the email provider: open after this many failures in
# a row, probe again after this many seconds.
EMAIL_BREAKER_FAIL_MAX = int(env("EMAIL_BREAKER_FAIL_MAX", "5"))
EMAIL_BREAKER_RESET_SECONDS = int(env("EMAIL_BREAKER_RESET_SECONDS", "60"))
EMAIL_MAX_RETRIES = int(env("EMAIL_MAX_RETRIES", "8"))
BREAKER_NAMESPACE = env("BREAKER_NAMESPACE", "breaker")

# --- exports ---------------------------------------------------------------
EXPORT_DOWNLOAD_SECONDS = int(env("EXPORT_DOWNLOAD_SECONDS", str(24 * 3600)))
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
    "EXCEPTION_HANDLER": "apps.api.problems.exception_handler",
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
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
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
DATA_UPLOAD_MAX_MEMORY_SIZE = int(env("DATA_UPLOAD_MAX_MEMORY_SIZE", str(5 * 1024 * 1024)))
IDEMPOTENCY_KEY_SECONDS = 24 * 3600

# --- rate limits, caching, load shedding ----------------------------------
RATE_LIMIT_PREFIX = env("RATE_LIMIT_PREFIX", "rl")
# An API key may use this share of its tenant's per-minute limit.
RATE_LIMIT_KEY_SHARE = float(env("RATE_LIMIT_KEY_SHARE", "0.5"))
# Expensive endpoints: their own lower limit, a share of the tenant's.
RATE_LIMIT_SCOPES = {"search": 0.25, "exports": 0.02, "bulk": 0.05}
CACHE_DEFAULT_SECONDS = int(env("CACHE_DEFAULT_SECONDS", "300"))
TENANT_CACHE_ENABLED = env_bool("TENANT_CACHE_ENABLED", True)
SHED_ENABLED = env_bool("SHED_ENABLED", True)
# Requests one worker process works on at once (gthread threads); low-priority
# work may fill only part of it, so critical requests always find a thread.
SHED_CAPACITY = int(env("SHED_CAPACITY", env("GUNICORN_THREADS", "8")))
SHED_SHARES = {"critical": 1.0, "normal": 0.75, "low": 0.4}

# --- accounts -------------------------------------------------------------
USER_TOKEN_SECONDS = int(env("USER_TOKEN_SECONDS", str(12 * 3600)))
INVITATION_SECONDS = int(env("INVITATION_SECONDS", str(7 * 24 * 3600)))
# Links in emails (invitations, password resets, export downloads): scheme,
# host and port as people reach a tenant; {host} is the tenant's primary host.
TENANT_BASE_URL = env("TENANT_BASE_URL", "https://{host}")
PASSWORD_RESET_TIMEOUT = int(env("PASSWORD_RESET_TIMEOUT", "3600"))

# --- observability --------------------------------------------------------
PROMETHEUS_EXPORT_MIGRATIONS = False
# /metrics, and the detail of /readyz, answer only on the internal listener
# (gunicorn also binds OPS_PORT when it is set; no ingress or load balancer
# routes to it) or to `Authorization: Bearer <OPS_TOKEN>`. Everyone else gets
# 404 for /metrics and a bare status from /readyz.
OPS_PORT = int(env("OPS_PORT", "0")) or None
OPS_TOKEN = env("OPS_TOKEN", "")
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOG_FORMAT = env("LOG_FORMAT", "json")  # "json" or "console"
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
