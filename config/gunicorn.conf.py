"""gunicorn settings, read from the environment.

Metrics: prometheus_client's multiprocess mode. Each worker writes its samples
to files in PROMETHEUS_MULTIPROC_DIR and /metrics merges them, so a scrape
that lands on any worker reports the whole server. The directory is emptied
when the master starts and a dead worker's live gauges are dropped.
"""

import os
import shutil
import tempfile

bind = [os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")]
# The internal listener for Prometheus and operators (see OPS_PORT in settings).
if os.environ.get("OPS_PORT"):
    bind.append(f"{os.environ.get('OPS_BIND_HOST', '0.0.0.0')}:{os.environ['OPS_PORT']}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threaded workers by default: a worker then serves several requests at once,
# which load shedding (apps/ratelimit/shedding.py) divides by priority.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# Recycle workers now and then so slow leaks cannot accumulate; jitter keeps
# them from restarting together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "500"))
accesslog = None  # the app logs each request as JSON with its request id
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
wsgi_app = "config.wsgi:application"

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-multiproc-")


def on_starting(server):
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
