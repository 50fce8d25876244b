"""Container health check for every process type of the one image.

    python -m config.healthcheck        (the Dockerfile's HEALTHCHECK)

PROCESS_TYPE says what the container runs (the compose file and the
Kubernetes manifests set it):

* ``web``: gunicorn answers /healthz on PORT (no I/O behind it);
* ``worker``: the Celery worker answers a ping addressed to it alone;
* ``beat``: the scheduler rewrote its schedule file recently;
* anything else (``migrate``, one-off commands): healthy while it runs.

Standard library and Celery only, and no Django settings unless needed: it
runs every few seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

BEAT_SCHEDULE = os.environ.get("BEAT_SCHEDULE_FILE", "/tmp/celerybeat-schedule")
BEAT_STALE_SECONDS = 600


def web() -> bool:
    port = os.environ.get("PORT", "8000")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        return response.status == 200


def worker() -> bool:
    name = os.environ.get("WORKER_NAME", "celery") + "@" + socket.gethostname()
    result = subprocess.run(
        [sys.executable, "-m", "celery", "--app", "config.celery_app", "inspect", "ping", "--destination", name,
         "--timeout", "5"],
        capture_output=True, text=True, timeout=20,
    )
    return result.returncode == 0 and "pong" in result.stdout


def beat() -> bool:
    return time.time() - os.stat(BEAT_SCHEDULE).st_mtime < BEAT_STALE_SECONDS


CHECKS = {"web": web, "worker": worker, "beat": beat}


def main() -> int:
    check = CHECKS.get(os.environ.get("PROCESS_TYPE", "web"))
    if check is None:
        return 0
    try:
        return 0 if check() else 1
    except Exception as exc:  # unhealthy, with the reason in `docker inspect`
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
