"""Versions held in process and invalidated by Redis itself (pushed, not polled).

Why: every request used to read its scopes' versions (host, tenant access,
plans) and the client's read-your-writes mark in one Redis round trip, so that
a suspended tenant or a revoked key fails on the very next request in every
worker. That round trip was about 40% of a trivial request. Redis can tell a
process when a key changes instead (server-assisted client-side caching,
``CLIENT TRACKING ... BCAST PREFIX``): each process keeps one extra
connection on which Redis pushes the name of every key under
``watched_prefix()`` that is written, expires or is evicted. The process
holds the last value it read of each such key and drops it when its name is
pushed; a held value is used without asking Redis.

Why the next request still sees a change: Redis queues the push to every
watching connection while it runs the writing command, before the writer
gets its reply flushed (BCAST pushes are queued in the same event-loop turn,
before pending replies are written), and a request reads the pushes already
on its process's socket before it uses a held value (a non-blocking
``poll``; no round trip). Held values are used only while a pong arrived
within ``PUSH_SILENCE_SECONDS``: Redis answers a PING in order, so a recent
pong proves every push queued before that ping was handled (a process that
was frozen or stalled makes round trips until it has a fresh pong). So a request that follows the change (the writer's response reached
somebody who then called) finds the push on the socket. The one ordering
this cannot cover is a push that is slower from Redis to this process than
the whole path writer -> client -> load balancer -> this process.

Why not redis-py's client-side cache: it tracks per pooled connection in
default (not broadcast) mode and checks for pushes only on the connection a
command uses, and django-redis' pool and the Lua scripts on the request path
(which read and create versions) do not go through it.

When the held values are not used (the caller reads Redis as before):
- the watching connection is not subscribed yet, broke, or went silent
  (a ping every ``PUSH_PING_SECONDS``, no answer for ``PUSH_SILENCE_SECONDS``);
  everything held is dropped then, since pushes may have been lost;
- the process considers Redis suspect (``health.generation()`` is None), and
  on a new cache generation everything held is dropped. The health monitor's
  probes see any outage as long as ``REDIS_TIMEOUT_SECONDS`` in every
  process, and a writer gives up on an invalidation only after that long
  (``versioned.invalidate``), so a lost push is never followed by a held
  value: the same argument that protects the cache's entries.
A value read from Redis while a push for its key was being handled is not
held (``remember`` compares the key's last push with the read's start).
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time

from django.conf import settings
from redis.exceptions import RedisError

from . import health
from .connections import push_connection

logger = logging.getLogger(__name__)

CHANNEL = "__redis__:invalidate"
MAX_HELD = 100_000  # values per process before all are dropped (then read again)
RECONNECT_PAUSE_SECONDS = 0.5
DRAIN_LIMIT = 1000  # pushes a request handles before it leaves the rest to the listener


def _readable(sock, timeout: float) -> bool | None:
    """Whether ``sock`` has data (or EOF) within ``timeout`` seconds; None when
    it cannot be polled (closed). ``poll``, not ``select``: any descriptor number."""
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))
    except (OSError, ValueError):
        return None


def watched_prefix() -> str:
    """Keys whose values a process may hold: scope versions and read-your-writes marks."""
    from .versioned import key_prefix

    return f"{key_prefix()}:pv:"


class Watch:
    """One process's watching connection and the values it holds."""

    def __init__(self, url: str, prefix: str):
        self.url, self.prefix, self.pid = url, prefix, os.getpid()
        self._lock = threading.Lock()
        self._values: dict[str, str | None] = {}
        self._pushed: dict[str, int] = {}  # key -> sequence number of its last push
        self._seq = 0  # pushes handled so far
        self._floor = 0  # everything read before this sequence number is out of date
        self._conn = None  # the subscribed connection, when live
        self._sock = None
        self._generation: int | None = None
        self._ping_since: float | None = None  # when the oldest unanswered ping was sent
        self._pong_at = 0.0  # when the last pong was handled
        self._stop = threading.Event()
        self.connects = 0  # subscriptions made (tests, metrics)
        self._thread = threading.Thread(target=self._run, name="redis-push", daemon=True)
        self._thread.start()

    # --- request path -------------------------------------------------------

    def start_read(self) -> int | None:
        """Make held values current (handle pushes waiting on the socket) and
        return a token for ``get`` and ``remember``; None: hold nothing now."""
        sock = self._sock
        if sock is None:
            return None
        generation = health.generation()
        if generation is None:
            return None
        if time.monotonic() - self._pong_at > settings.PUSH_SILENCE_SECONDS or not self._thread.is_alive():
            return None
        waiting = _readable(sock, 0) is not False  # None (unusable): the drain finds out
        with self._lock:
            if self._conn is None:
                return None
            if waiting:
                # Bounded: a long backlog (after a stall) is the listener's to
                # work through; until then this request asks Redis.
                if not self._drain_or_drop(limit=DRAIN_LIMIT) or self._conn is None:
                    return None
            if self._generation != generation:
                self._drop_all()
                self._generation = generation
            return self._seq

    def get(self, keys: list[str]) -> list[str | None] | None:
        """The held values of ``keys`` (None for a key known to be absent), or
        None when any of them is not held."""
        values = self._values
        try:
            return [values[key] for key in keys]
        except KeyError:
            return None

    def remember(self, token: int, keys: list[str], values: list[str | None]) -> None:
        """Hold ``values`` read from Redis after ``start_read`` returned ``token``,
        except those whose key was pushed since (they may be older than it)."""
        generation = health.generation()
        with self._lock:
            if self._conn is None or self._generation != generation or token < self._floor:
                return
            if len(self._values) + len(keys) > MAX_HELD:
                self._drop_all()
                return
            pushed = self._pushed
            for key, value in zip(keys, values, strict=True):
                if key.startswith(self.prefix) and pushed.get(key, 0) <= token:
                    self._values[key] = value

    # --- the watching connection ---------------------------------------------

    def _drain_or_drop(self, limit: int | None = None) -> bool:
        """Handle the messages on the socket, at most ``limit`` (lock held);
        True when none is left. On any error, stop being live."""
        conn = self._conn
        handled = 0
        try:
            while conn.can_read(timeout=0):
                if limit is not None and handled >= limit:
                    return False
                self._handle(conn.read_response())
                handled += 1
        except Exception as exc:  # noqa: BLE001 - whatever broke, nothing held may be trusted
            logger.warning("redis push connection lost: held versions dropped", extra={"error": str(exc)[:200]})
            self._go_dark()
        return True

    def _handle(self, message) -> None:
        kind = message[0]
        if kind == b"message":
            keys = message[2]
            self._seq += 1
            if keys is None:  # FLUSHALL / FLUSHDB: everything
                self._drop_all()
                return
            if len(self._pushed) > MAX_HELD:
                self._pushed.clear()
                self._floor = self._seq
            for key in keys:
                key = key.decode() if isinstance(key, bytes) else key
                self._values.pop(key, None)
                self._pushed[key] = self._seq
        elif kind == b"pong":
            self._ping_since = None
            self._pong_at = time.monotonic()

    def _drop_all(self) -> None:
        self._seq += 1
        self._values.clear()
        self._pushed.clear()
        self._floor = self._seq

    def _go_dark(self) -> None:
        self._drop_all()
        conn, self._conn, self._sock = self._conn, None, None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass

    def _subscribe(self):
        # RESP2: the pushes come as plain pub/sub messages on the redirect channel.
        conn = push_connection(self.url)
        conn.connect()
        conn.send_command("CLIENT", "SETNAME", f"push-{self.pid}")
        conn.read_response()
        conn.send_command("CLIENT", "ID")
        client_id = conn.read_response()
        conn.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", self.prefix)
        conn.read_response()
        conn.send_command("SUBSCRIBE", CHANNEL)
        conn.read_response()
        return conn

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._serve()
            except Exception:  # noqa: BLE001 - the listener must outlive any surprise
                logger.exception("redis push listener failed: held versions dropped")
                with self._lock:
                    self._go_dark()
                self._stop.wait(RECONNECT_PAUSE_SECONDS)

    def _serve(self) -> None:
        ping_every = settings.PUSH_PING_SECONDS
        while not self._stop.is_set():
            try:
                conn = self._subscribe()
            except (RedisError, OSError) as exc:
                logger.debug("redis push connection not made", extra={"error": str(exc)[:200]})
                self._stop.wait(RECONNECT_PAUSE_SECONDS)
                continue
            with self._lock:
                self._drop_all()
                self._generation = None
                self._conn, self._sock = conn, conn._sock
                self._ping_since = None
                self._pong_at = time.monotonic()  # the subscription was just answered
                self.connects += 1
            last_ping = time.monotonic()
            while not self._stop.is_set():
                sock = self._sock
                if sock is None:
                    break
                if _readable(sock, ping_every) is None:
                    self._stop.wait(ping_every)  # the socket is unusable; the drain below finds out
                with self._lock:
                    if self._conn is not conn:
                        break
                    self._drain_or_drop()
                    if self._conn is None:
                        break
                    now = time.monotonic()
                    # Silence is an unanswered ping, not a gap between pings:
                    # a thread kept from running (a busy process) is not an outage.
                    if self._ping_since is not None and now - self._ping_since > settings.PUSH_SILENCE_SECONDS:
                        logger.warning("redis push connection silent: held versions dropped")
                        self._go_dark()
                        break
                    if now - last_ping >= ping_every:
                        try:
                            conn.send_command("PING")
                        except (RedisError, OSError):
                            self._go_dark()
                            break
                        last_ping = now
                        if self._ping_since is None:
                            self._ping_since = now
            self._stop.wait(RECONNECT_PAUSE_SECONDS)
        with self._lock:
            self._go_dark()

    def stop(self) -> None:
        self._stop.set()


_lock = threading.Lock()
_watch: Watch | None = None


def watch() -> Watch | None:
    """This process's watch on the cache's Redis (started on first use), or
    None when pushed invalidation is turned off."""
    global _watch
    if not settings.PUSH_INVALIDATION:
        return None
    current = _watch
    if current is not None and current.pid == os.getpid() and current.url == health.cache_location() \
            and current.prefix == watched_prefix():
        return current
    with _lock:
        current = _watch
        url, prefix = health.cache_location(), watched_prefix()
        if current is None or current.pid != os.getpid() or current.url != url or current.prefix != prefix:
            if current is not None and current.pid == os.getpid():
                current.stop()
            current = _watch = Watch(url, prefix)
        return current


def start_read() -> tuple[Watch, int] | None:
    """(watch, token) when held values may be used for this read, else None.
    Never raises: any surprise means this read asks Redis."""
    try:
        current = watch()
        if current is None:
            return None
        token = current.start_read()
    except Exception:  # noqa: BLE001 - an optimisation must not fail a request
        logger.exception("redis push: held versions not used")
        return None
    return None if token is None else (current, token)
