"""One POST to a tenant's endpoint, bounded in every way.

Standard library HTTP (http.client over a socket this module connects):
the socket is connected to an address ``destinations`` checked a moment
before, TLS is verified against the URL's host name (SNI), and the whole
attempt ends by WEBHOOKS_TIMEOUT_SECONDS even against a server that answers
a byte at a time (a watchdog shuts the socket at the deadline). At most
WEBHOOKS_RESPONSE_READ_BYTES of the answer are read. A connection whose
answer was read to its end is kept for the next delivery to the same
origin within one run.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin

from django.conf import settings

from . import destinations
from .destinations import DestinationRefused, Target

USER_AGENT = "saas-platform-webhooks/1"
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str
    excerpt: str
    seconds: float
    refused: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Watchdog:
    """Shuts sockets whose deadline passed: a read that trickles is stopped
    as surely as one that stalls. One thread for the process."""

    def __init__(self):
        self._heap: list = []
        self._live: dict[int, socket.socket] = {}
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._wake:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="webhook-deadlines", daemon=True)
                self._thread.start()
            ticket = next(self._ids)
            self._live[ticket] = sock
            heapq.heappush(self._heap, (deadline, ticket))
            self._wake.notify()
            return ticket

    def release(self, ticket: int) -> None:
        with self._wake:
            self._live.pop(ticket, None)

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, ticket = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                sock = self._live.pop(ticket, None)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


_watchdog = _Watchdog()


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the attempt's time ran out")
    return left


def _connect(target: Target, deadline: float) -> http.client.HTTPConnection:
    """A connection to a checked address of ``target`` (DNS resolved now)."""
    addresses = destinations.checked_addresses(target)
    error: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection(
                (address, target.port), timeout=min(settings.WEBHOOKS_CONNECT_TIMEOUT_SECONDS, _remaining(deadline)))
            break
        except OSError as exc:
            error = exc
    else:
        raise error or ConnectionError("no address answered")
    # http.client sends the headers and the body in two writes: without this,
    # Nagle's algorithm and the receiver's delayed ACK cost tens of ms each.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if target.scheme == "https":
        sock.settimeout(_remaining(deadline))
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        connection = http.client.HTTPSConnection(target.host, target.port)
    else:
        connection = http.client.HTTPConnection(target.host, target.port)
    connection.sock = sock  # connected here, so http.client never resolves or connects by itself
    return connection


class Sender:
    """Sends one run's deliveries; keeps finished connections per origin.
    Not shared between threads: each thread of a run has its own."""

    def __init__(self):
        self._kept: dict[tuple, http.client.HTTPConnection] = {}

    def close(self) -> None:
        for connection in self._kept.values():
            connection.close()
        self._kept.clear()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.monotonic()
        deadline = started + settings.WEBHOOKS_TIMEOUT_SECONDS
        try:
            target = destinations.parse(url)
            for hop in range(settings.WEBHOOKS_MAX_REDIRECTS + 1):
                status, excerpt, location = self._exchange(target, body, headers, deadline)
                if not (300 <= status < 400 and location and hop < settings.WEBHOOKS_MAX_REDIRECTS):
                    break
                target = destinations.parse(urljoin(f"{target.scheme}://{target.origin}{target.path}", location))
        except DestinationRefused as exc:
            return Outcome(None, f"refused: {exc}", "", time.monotonic() - started, refused=True)
        except Exception as exc:  # network, TLS, protocol: the attempt failed, the delivery retries
            # The watchdog's shutdown surfaces as a closed connection: past the deadline it was the clock.
            error = "timed out" if time.monotonic() >= deadline else _describe(exc)
            return Outcome(None, error, "", time.monotonic() - started)
        error = "" if 200 <= status < 300 else (f"redirect to {location[:150]} not followed" if location
                                                 else f"answered {status}")
        return Outcome(status, error, excerpt, time.monotonic() - started)

    def _exchange(self, target: Target, body: bytes, headers: dict, deadline: float) -> tuple[int, str, str]:
        key = (target.scheme, target.host, target.port)
        connection = self._kept.pop(key, None)
        reused = connection is not None
        try:
            return self._round_trip(key, connection or _connect(target, deadline), target, body, headers, deadline)
        except STALE:
            if not reused:
                raise
            # A kept connection the server had closed meanwhile: once more on a new one.
            return self._round_trip(key, _connect(target, deadline), target, body, headers, deadline)

    def _round_trip(self, key, connection, target: Target, body: bytes, headers: dict,
                    deadline: float) -> tuple[int, str, str]:
        ticket = _watchdog.watch(connection.sock, deadline)
        finished = False
        try:
            connection.sock.settimeout(_remaining(deadline))
            connection.request("POST", target.path, body=body, headers={
                "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
            response = connection.getresponse()
            data = response.read(settings.WEBHOOKS_RESPONSE_READ_BYTES) if settings.WEBHOOKS_RESPONSE_READ_BYTES else b""
            finished = response.isclosed() and not response.will_close
            location = response.getheader("Location", "") if 300 <= response.status < 400 else ""
            excerpt = data[:settings.WEBHOOKS_RESPONSE_KEEP_BYTES].decode("utf-8", errors="replace")
            return response.status, excerpt, location
        finally:
            _watchdog.release(ticket)
            if finished and time.monotonic() < deadline:
                self._kept[key] = connection
            else:
                connection.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected | http.client.IncompleteRead | ConnectionResetError):
        return "the connection closed without a complete answer"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
