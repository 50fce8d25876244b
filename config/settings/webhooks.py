"""Tenant webhooks: delivery bounds, retries, limits per plan, destination safety."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .environment import env, env_bool, env_float, env_int

# --- destinations -----------------------------------------------------------
# Only public addresses are ever connected to. These two open loopback and
# plain http for tests and a developer's machine; production refuses to
# start with either on (config/settings/production.py).
WEBHOOKS_ALLOW_LOOPBACK = env_bool("WEBHOOKS_ALLOW_LOOPBACK", False)
WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", False)
# Redirects are answers, not instructions: 0 records a 3xx as a failure.
# Above 0, each hop is checked like the first (scheme, resolution, address).
WEBHOOKS_MAX_REDIRECTS = env_int("WEBHOOKS_MAX_REDIRECTS", 0, minimum=0)

# --- one attempt ---------------------------------------------------------------
WEBHOOKS_CONNECT_TIMEOUT_SECONDS = env_float("WEBHOOKS_CONNECT_TIMEOUT_SECONDS", 3.0, minimum=0.1, unit="seconds")
# The whole attempt (resolution, connect, TLS, request, answer) ends by then.
WEBHOOKS_TIMEOUT_SECONDS = env_float("WEBHOOKS_TIMEOUT_SECONDS", 10.0, minimum=0.5, unit="seconds")
# At most this much of an answer is read, and the first KEEP bytes are kept.
WEBHOOKS_RESPONSE_READ_BYTES = env_int("WEBHOOKS_RESPONSE_READ_BYTES", 8192, minimum=0, unit="bytes")
WEBHOOKS_RESPONSE_KEEP_BYTES = env_int("WEBHOOKS_RESPONSE_KEEP_BYTES", 500, minimum=0, unit="bytes")
# A body larger than this carries a link to the event instead of its data.
WEBHOOKS_MAX_PAYLOAD_BYTES = env_int("WEBHOOKS_MAX_PAYLOAD_BYTES", 64 * 1024, minimum=1024, unit="bytes")

# --- retries, giving up, disabling ---------------------------------------------
WEBHOOKS_RETRY_BASE_SECONDS = env_float("WEBHOOKS_RETRY_BASE_SECONDS", 30, minimum=0.1, unit="seconds")
WEBHOOKS_RETRY_MAX_SECONDS = env_float("WEBHOOKS_RETRY_MAX_SECONDS", 6 * 3600, minimum=1, unit="seconds")
# A delivery still failing this long after its first attempt is dead.
WEBHOOKS_RETRY_FOR_SECONDS = env_int("WEBHOOKS_RETRY_FOR_SECONDS", 3 * 24 * 3600, minimum=1, unit="seconds")
# An endpoint with no success for this long is disabled and its owners emailed.
WEBHOOKS_DISABLE_AFTER_SECONDS = env_int("WEBHOOKS_DISABLE_AFTER_SECONDS", 3 * 24 * 3600, minimum=1, unit="seconds")
# Events (with their deliveries and attempts) are kept this long.
WEBHOOKS_EVENT_RETENTION_SECONDS = env_int("WEBHOOKS_EVENT_RETENTION_SECONDS", 30 * 24 * 3600, minimum=3600,
                                           unit="seconds")
# After a rotation the previous secret still signs for this long (default).
WEBHOOKS_ROTATION_OVERLAP_SECONDS = env_int("WEBHOOKS_ROTATION_OVERLAP_SECONDS", 24 * 3600, minimum=0,
                                            unit="seconds")

# --- breaker per destination host ------------------------------------------------
WEBHOOKS_BREAKER_FAIL_MAX = env_int("WEBHOOKS_BREAKER_FAIL_MAX", 5, minimum=1)
WEBHOOKS_BREAKER_RESET_SECONDS = env_float("WEBHOOKS_BREAKER_RESET_SECONDS", 60, minimum=0.1, unit="seconds")

# --- the delivery worker -----------------------------------------------------------
# One run for a tenant claims up to BATCH due deliveries at a time, sends
# them on up to THREADS connections (one per destination host), and starts
# no attempt after RUN_SECONDS: the worker is handed back within that plus
# one attempt, and the rest waits for the next run, queued behind other tenants'.
WEBHOOKS_BATCH = env_int("WEBHOOKS_BATCH", 50, minimum=1)
WEBHOOKS_THREADS = env_int("WEBHOOKS_THREADS", 4, minimum=1)
WEBHOOKS_RUN_SECONDS = env_float("WEBHOOKS_RUN_SECONDS", 1.0, minimum=0.05, unit="seconds")
# A claimed delivery belongs to its run this long; a run that died leaves
# claims that lapse after it (then another run sends them). Longer than
# RUN_SECONDS plus one attempt (WEBHOOKS_TIMEOUT_SECONDS), or a slow run's
# claims would lapse under it.
WEBHOOKS_CLAIM_SECONDS = env_int("WEBHOOKS_CLAIM_SECONDS", 60, minimum=1, unit="seconds")
# Beat wakes tenants whose retries came due this often (and any wake-up lost).
WEBHOOKS_SWEEP_SECONDS = env_float("WEBHOOKS_SWEEP_SECONDS", 15, minimum=0.1, unit="seconds")


def _per_plan(raw: str) -> dict[str, int]:
    limits = {}
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        code, _, value = item.partition("=")
        if not code.strip() or not value.strip().isdigit():
            raise ImproperlyConfigured(
                f"WEBHOOKS_ENDPOINTS_PER_PLAN: expected plan=count pairs (e.g. free=1,pro=5), got {item!r}")
        limits[code.strip()] = int(value)
    return limits


# Endpoints a tenant may have, by plan code; plans not named get the default.
WEBHOOKS_ENDPOINTS_PER_PLAN = _per_plan(env("WEBHOOKS_ENDPOINTS_PER_PLAN", "free=1,pro=5,enterprise=25"))
WEBHOOKS_ENDPOINTS_DEFAULT = env_int("WEBHOOKS_ENDPOINTS_DEFAULT", 1, minimum=0)
if WEBHOOKS_CLAIM_SECONDS <= WEBHOOKS_RUN_SECONDS + WEBHOOKS_TIMEOUT_SECONDS:
    raise ImproperlyConfigured("WEBHOOKS_CLAIM_SECONDS: expected more than WEBHOOKS_RUN_SECONDS + "
                               "WEBHOOKS_TIMEOUT_SECONDS (a run's claims must outlive its last attempt)")
