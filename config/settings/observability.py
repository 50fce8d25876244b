"""Metrics, logs and traces; the operator console's readings."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .environment import env, env_bool, env_choice, env_float, env_int, env_list, env_url
from .environment import missing as _missing

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
# (apps/ops/collectors.py): each server gets this long per reading,
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
