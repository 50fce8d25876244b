"""gunicorn's threaded worker, telling the application how long each request
waited for a thread.

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

import threading
import time

from gunicorn.workers.gthread import ThreadWorker

# Read by apps/ratelimit/shedding.py (QUEUE_WAIT_ENVIRON; a test checks they match).
QUEUE_WAIT_ENVIRON = "saas.queue_wait_seconds"


class QueueTimedThreadWorker(ThreadWorker):
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
