"""Celery (broker, queues, routes, beat), the outbox relay, once-only effects and exports."""

from __future__ import annotations

from .caching import CACHE_INVALIDATION_SWEEP_SECONDS, REDIS_URL
from .core import BASE_DIR
from .environment import BROKER_SCHEMES, env, env_float, env_int, env_url
from .lifecycle import TENANT_ERASURE_SWEEP_SECONDS
from .tenancy import MOVE_RECOVERY_SECONDS
from .webhooks import WEBHOOKS_SWEEP_SECONDS

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
TASK_QUEUES = ["default", "emails", "exports", "search", "maintenance", "webhooks"]
CELERY_TASK_ROUTES = {
    "notifications.*": {"queue": "emails"},
    "reports.*": {"queue": "exports"},
    "search.*": {"queue": "search"},
    "partitions.*": {"queue": "maintenance"},
    "outbox.*": {"queue": "maintenance"},
    "idempotency.*": {"queue": "maintenance"},
    "caching.*": {"queue": "maintenance"},
    "tenancy.*": {"queue": "maintenance"},
    # A whole-tenant export is long and heavy like the reports; erasure is upkeep.
    "lifecycle.export_tenant": {"queue": "exports"},
    "lifecycle.*": {"queue": "maintenance"},
    # Deliveries to tenants' endpoints: a worker group of their own, so a
    # slow receiver holds no email, export or sweep.
    "webhooks.*": {"queue": "webhooks"},
    "webhooks.purge": {"queue": "maintenance"},
    "webhooks.purge_tenants": {"queue": "maintenance"},
}
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BEAT_SCHEDULE: dict = {
    "maintain-partitions": {"task": "partitions.maintain", "schedule": 6 * 3600},
    "sweep-outboxes": {"task": "outbox.sweep", "schedule": env_float("OUTBOX_SWEEP_SECONDS", 15, minimum=0.1, unit="seconds")},
    "purge-idempotency-keys": {"task": "idempotency.purge", "schedule": 3600},
    "purge-outboxes": {"task": "outbox.purge", "schedule": 3600},
    "sweep-cache-invalidations": {"task": "caching.sweep_invalidations",
                                  "schedule": CACHE_INVALIDATION_SWEEP_SECONDS},
    # A move whose mover died is rolled back (before its switch) or finished (after).
    "recover-moves": {"task": "tenancy.recover_moves", "schedule": MOVE_RECOVERY_SECONDS},
    # Offboarded tenants whose grace period is over are erased.
    "erase-offboarded-tenants": {"task": "lifecycle.erase_due",
                                 "schedule": TENANT_ERASURE_SWEEP_SECONDS},
    # Webhook retries that came due, and any wake-up lost on the way.
    "sweep-webhooks": {"task": "webhooks.sweep", "schedule": WEBHOOKS_SWEEP_SECONDS},
    "purge-webhook-events": {"task": "webhooks.purge", "schedule": 3600},
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

# --- exports ---------------------------------------------------------------
EXPORT_DOWNLOAD_SECONDS = env_int("EXPORT_DOWNLOAD_SECONDS", 24 * 3600, minimum=1, unit="seconds")
# A running export beats at least this often while it makes progress; one
# silent for EXPORT_STALL_SECONDS shows as stalled (its worker likely died;
# the broker hands it to another worker, see CELERY_VISIBILITY_TIMEOUT).
EXPORT_HEARTBEAT_SECONDS = env_int("EXPORT_HEARTBEAT_SECONDS", 15, minimum=1, unit="seconds")
EXPORT_STALL_SECONDS = env_int("EXPORT_STALL_SECONDS", 120, minimum=1, unit="seconds")
MEDIA_ROOT = env("MEDIA_ROOT", str(BASE_DIR / "var" / "media"))
