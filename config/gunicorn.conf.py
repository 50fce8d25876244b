"""gunicorn settings, read from the environment.

Metrics: prometheus_client's multiprocess mode. Each worker writes its samples
to files in PROMETHEUS_MULTIPROC_DIR and /metrics merges them, so a scrape
that lands on any worker reports the whole server. The directory is emptied
when the master starts and a dead worker's live gauges are dropped.
"""

import os
import re
import shutil
import tempfile

bind = [os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")]
# The internal listener for Prometheus and operators (see OPS_PORT in settings).
if os.environ.get("OPS_PORT"):
    bind.append(f"{os.environ.get('OPS_BIND_HOST', '0.0.0.0')}:{os.environ['OPS_PORT']}")
# The control socket (gunicornc) defaults to one path per user: a second
# master on the machine took it over, and the first to stop deleted it for
# both. Given a directory (bin/dev: one under the checkout's .local/), each
# master's socket is named by the address it listens on, which no two
# running masters share.
if os.environ.get("GUNICORN_CONTROL_DIR"):
    control_socket = os.path.join(os.environ["GUNICORN_CONTROL_DIR"], re.sub(r"[^\w.-]", "_", bind[0]) + ".ctl")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threaded workers: the queue in front of a worker's threads is where load
# shedding (apps/ratelimit/shedding.py) measures overload, so this worker
# class stamps each request's wait for a thread. One thread is the sync
# worker: no queue to measure, so nothing is shed.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Both worker classes answer requests gunicorn refuses (over the limits below,
# or not valid HTTP) with problem details, not gunicorn's HTML page.
worker_class = ("config.gunicorn_workers.QueueTimedThreadWorker" if threads > 1
                else "config.gunicorn_workers.ProblemSyncWorker")
# Request limits, chosen rather than inherited. The request line: gunicorn's
# maximum, 8190 bytes, holds every URL the API's schema allows (each query
# parameter has a bounded length; apps/api/tests/test_request_limits.py adds
# them up at 12 bytes a character, a 4-byte UTF-8 character percent-encoded);
# above it the answer is 414. Headers: at most 100, each at most 8190 bytes
# with its name (a bearer token is under 100 bytes, a session cookie under
# 300); more is 431. The proxies in front refuse some larger requests in
# their own format before gunicorn reads them: nginx (ingress) request lines
# or header fields over 8 KiB, HAProxy request heads over 16 KiB.
limit_request_line = int(os.environ.get("GUNICORN_LIMIT_REQUEST_LINE", "8190"))
limit_request_fields = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELDS", "100"))
limit_request_field_size = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", "8190"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# Recycling bounds slow leaks, but each restart takes a worker away while its
# replacement boots and the others absorb its load; at the former 5,000
# requests a busy worker restarted every 5-25 s. So: rarely, and with a jitter
# as large as the limit, so that restarts are spread over [N, 2N] requests and
# workers do not go together (figures: platform/runbooks/load-and-degradation.md).
# gunicorn drains a recycled worker: it stops accepting, finishes its requests
# and answers kept-alive connections with "Connection: close" before it exits.
# 0 turns recycling off.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "200000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", str(max_requests)))
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


def post_fork(server, worker):
    # Tracing, when the OTEL_* variables turn it on, starts in each worker:
    # its exporter thread would not survive the fork from the master. Before
    # the application is loaded, so that Django's middleware includes it.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from apps.observability.tracing import init_process

    init_process("web")
