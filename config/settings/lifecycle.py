"""Whole-tenant exports and imports, offboarding and erasure (apps/lifecycle)."""

from __future__ import annotations

from .core import BASE_DIR
from .environment import env, env_float, env_int

# An offboarded tenant is suspended at once and erased this long after the
# request (undo possible until then).
TENANT_OFFBOARDING_GRACE_DAYS = env_float("TENANT_OFFBOARDING_GRACE_DAYS", 30, minimum=0, unit="days")
# How often beat looks for offboardings whose grace period is over.
TENANT_ERASURE_SWEEP_SECONDS = env_int("TENANT_ERASURE_SWEEP_SECONDS", 3600, minimum=1, unit="seconds")
# Where a running tenant export writes its parts (one file per table) before
# they go into the archive: local disk of the exports worker, kept across a
# worker's death so that the next attempt resumes from the last finished table.
TENANT_EXPORT_WORK_DIR = env("TENANT_EXPORT_WORK_DIR", str(BASE_DIR / "var" / "tenant-exports-work"))
# A finished archive's signed download link is valid this long.
TENANT_EXPORT_DOWNLOAD_SECONDS = env_int("TENANT_EXPORT_DOWNLOAD_SECONDS", 24 * 3600, minimum=1, unit="seconds")
# A running tenant export records its progress at most this often.
TENANT_EXPORT_HEARTBEAT_SECONDS = env_float("TENANT_EXPORT_HEARTBEAT_SECONDS", 5, minimum=0, unit="seconds")
