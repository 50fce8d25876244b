"""Job records, worker presence, unique jobs and batches (apps/jobs)."""

from __future__ import annotations

from .environment import env_bool, env_float, env_int

# --- job records (apps/jobs/records.py) --------------------------------------
# Every task gets a row in jobs_job (control plane). Publishes and state changes
# are gathered in process and written by one thread per process every
# JOB_RECORD_FLUSH_SECONDS, so enqueueing never waits on the database. At most
# JOB_RECORD_BUFFER_SIZE events wait per process; beyond that new ones are
# dropped (and counted in the log): the records never hold work back.
JOB_RECORDS_ENABLED = env_bool("JOB_RECORDS_ENABLED", True)
JOB_RECORD_FLUSH_SECONDS = env_float("JOB_RECORD_FLUSH_SECONDS", 1.0, minimum=0.05, unit="seconds")
JOB_RECORD_BUFFER_SIZE = env_int("JOB_RECORD_BUFFER_SIZE", 50_000, minimum=100)
# Finished rows are deleted by `jobs.purge_records` (hourly, maintenance queue)
# in batches of JOB_RECORD_PURGE_BATCH: succeeded and skipped ones after the
# first period, all others (failed, dead, discarded, and any left unfinished)
# after the second. Finished batches go with the second.
JOB_RECORD_SUCCEEDED_RETENTION_SECONDS = env_int("JOB_RECORD_SUCCEEDED_RETENTION_SECONDS", 24 * 3600, minimum=60,
                                                 unit="seconds")
JOB_RECORD_RETENTION_SECONDS = env_int("JOB_RECORD_RETENTION_SECONDS", 7 * 24 * 3600, minimum=60, unit="seconds")
JOB_RECORD_PURGE_BATCH = env_int("JOB_RECORD_PURGE_BATCH", 5000, minimum=1)

# --- worker presence (apps/jobs/heartbeat.py) ------------------------------------
# Each worker writes who it is, what it consumes and how busy it is to Redis
# this often; an entry not renewed for 3 intervals is gone (a killed worker).
WORKER_PRESENCE_SECONDS = env_float("WORKER_PRESENCE_SECONDS", 10.0, minimum=0.2, unit="seconds")
