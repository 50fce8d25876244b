"""A private redis-server that tests kill, restart, pause (SIGSTOP) and resume,
and a way to point this process's cache at it."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from tests.workers import RedisBroker


class PrivateRedis(RedisBroker):
    def pid(self) -> int:
        return int(Path(self.dir, "redis.pid").read_text().strip())

    def pause(self) -> None:
        """A partition that keeps the data: connections stay open, nothing answers."""
        os.kill(self.pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid(), signal.SIGCONT)

    def kill(self) -> None:
        self.stop()

    def restart(self) -> PrivateRedis:
        """A new, empty server on the same port (no persistence)."""
        return self.start()

    def close(self) -> None:
        try:
            self.resume()
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        self.stop()


@contextmanager
def private_redis():
    server = PrivateRedis().start()
    try:
        yield server
    finally:
        server.close()


@contextmanager
def cache_on(settings, url: str):
    """Point this process's cache (and raw Redis clients) at ``url``."""
    saved_caches, saved_url = settings.CACHES, settings.REDIS_URL
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url}}
    settings.REDIS_URL = url
    try:
        yield
    finally:
        settings.CACHES, settings.REDIS_URL = saved_caches, saved_url


@contextmanager
def counting_round_trips(port: int | None = None):
    """Count the Redis round trips this thread makes (a pipeline is one),
    to the server on ``port`` only when given."""
    import redis.connection

    sent: list[bytes] = []
    me = threading.get_ident()
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        if threading.get_ident() == me and (port is None or getattr(self, "port", None) == port):
            sent.append(command if isinstance(command, bytes | str) else b"".join(command))
        return original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting
    try:
        yield sent
    finally:
        redis.connection.AbstractConnection.send_packed_command = original


@contextmanager
def counting_connects():
    """The TCP connections to Redis this thread tries to open, as (host, port),
    whether they succeed or not: a client that remembers a dead server tries none."""
    import redis.connection

    tried: list[tuple[str, int]] = []
    me = threading.get_ident()
    original = redis.connection.Connection._connect

    def counting(self):
        if threading.get_ident() == me:
            tried.append((self.host, int(self.port)))
        return original(self)

    redis.connection.Connection._connect = counting
    try:
        yield tried
    finally:
        redis.connection.Connection._connect = original
