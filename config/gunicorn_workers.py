"""gunicorn's workers: refusals in the platform's error format, and the
threaded worker telling the application how long each request waited for a
thread.

gunicorn refuses a request it cannot read (a request line or headers over
its limits, malformed HTTP) before any application code runs, with an HTML
page of its own. These workers answer the same statuses as RFC 9457 problem
details, the one error format of every endpoint, so a client reads them like
any other error: 414 for a request line over limit_request_line, 431 for
headers over limit_request_fields or limit_request_field_size, 400 for a
request that is not valid HTTP.

gthread's main thread accepts connections (and notices kept-alive ones
becoming readable) and hands each request to a pool of GUNICORN_THREADS
threads; when all are busy the request waits in the pool's queue. That wait is
the queueing delay load shedding acts on (apps/ratelimit/shedding.py): it is
near zero on a server that keeps up, however many connections a client holds
open, and grows only when requests arrive faster than they are served.
gunicorn records no accept time, so this worker stamps the hand-over and
passes the wait to the application in the WSGI environ.

Imported by the gunicorn master before Django is set up: standard library and
gunicorn only.
"""

from __future__ import annotations

import json
import threading
import time

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

# Read by apps/ratelimit/shedding.py (QUEUE_WAIT_ENVIRON; a test checks they match).
QUEUE_WAIT_ENVIRON = "saas.queue_wait_seconds"
# apps/http/problems.py's; this module cannot import Django (a test checks they match).
PROBLEM_TYPE_BASE = "https://errors.saas-platform.dev/"

# What gunicorn refuses as the client's fault with 400 (gunicorn.workers.base.handle_error).
MALFORMED = (
    http_errors.InvalidRequestLine, http_errors.InvalidRequestMethod, http_errors.InvalidHTTPVersion,
    http_errors.InvalidHeader, http_errors.InvalidHeaderName, http_errors.ObsoleteFolding,
    http_errors.InvalidProxyLine, http_errors.InvalidSchemeHeaders, http_errors.InvalidChunkSize,
    http_errors.ChunkMissingTerminator, http_errors.InvalidChunkExtension,
)


def refusal(exc, cfg) -> tuple[int, str, str, str] | None:
    """(status, code, title, detail) of a request gunicorn could not read; None when the fault is not the client's."""
    if isinstance(exc, http_errors.LimitRequestLine):
        return (414, "uri-too-long", "URI Too Long",
                f"The request line (method, path and query) is longer than {cfg.limit_request_line} bytes.")
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return (431, "request-header-fields-too-large", "Request Header Fields Too Large",
                f"Send at most {cfg.limit_request_fields} headers of at most {cfg.limit_request_field_size} "
                f"bytes each.")
    if isinstance(exc, MALFORMED):
        return 400, "bad-request", "Bad Request", "The request is not valid HTTP/1.1."
    return None


def problem_message(status: int, code: str, title: str, detail: str) -> bytes:
    """A whole HTTP response with a problem details body; the connection closes
    after it, as gunicorn's own refusal does (the rest of the request is unread)."""
    body = json.dumps({"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status,
                       "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {title}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\r\n")
    return head.encode("latin-1") + body


class ProblemRefusals:
    """Worker mixin: refusals of unreadable requests as problem details."""

    def handle_error(self, req, client, addr, exc):
        answer = refusal(exc, self.cfg)
        if answer is None:
            return super().handle_error(req, client, addr, exc)
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, problem_message(*answer))
        except Exception:
            self.log.debug("Failed to send error message.")
        return None


class ProblemSyncWorker(ProblemRefusals, SyncWorker):
    """The sync worker (GUNICORN_THREADS=1)."""


class QueueTimedThreadWorker(ProblemRefusals, ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._waits = threading.local()

    def enqueue_req(self, conn):
        # Runs on the main thread as the request is queued for the pool.
        conn.queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn):
        # Runs on a pool thread: the wait ends here, before the request is
        # read (a slow client's upload is not queueing delay).
        self._waits.seconds = time.monotonic() - getattr(conn, "queued_at", time.monotonic())
        return super().handle(conn)

    def load_wsgi(self):
        super().load_wsgi()
        application = self.wsgi
        waits = self._waits

        def timed(environ, start_response):
            environ[QUEUE_WAIT_ENVIRON] = getattr(waits, "seconds", 0.0)
            return application(environ, start_response)

        self.wsgi = timed
