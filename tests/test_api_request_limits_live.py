"""gunicorn refuses requests over its limits before Django runs; a client
still gets problem details (config/gunicorn_workers.py), with the status of
the limit it crossed, from both worker classes."""

from __future__ import annotations

import json
import socket

import pytest

from tests.support import Gunicorn

pytestmark = pytest.mark.live


def exchange(server: Gunicorn, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes after a refusal)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, body = b"".join(chunks).split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


@pytest.fixture(scope="module", params=["8", "1"], ids=["threaded", "sync"])
def server(request, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), Gunicorn(workers=1, env={"GUNICORN_THREADS": request.param}) as running:
        yield running


@pytest.mark.parametrize("request_bytes, status", [
    (get("/api/v1/search?q=" + "a" * 8200), 414),
    (get("/healthz", "X-Padding: " + "a" * 8200), 431),
    (get("/healthz", *(f"X-Header-{n}: 1" for n in range(101))), 431),
    (b"GET /healthz HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: x\r\n\r\n", 400),
], ids=["request-line", "header-size", "header-count", "http-version", "header-name"])
def test_refusals_are_problem_details(server, request_bytes, status):
    answered, headers, body = exchange(server, request_bytes)
    assert answered == status, body[:300]
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status and problem["type"].startswith("https://errors.saas-platform.dev/")
    assert problem["title"] and problem["detail"]


def test_a_long_url_within_the_limit_reaches_the_application(server):
    # Over gunicorn's default limit (4094 bytes), under the one set (8190).
    answered, _, body = exchange(server, get("/healthz?padding=" + "a" * 7000))
    assert answered == 200, body[:300]
