"""Rate limits and metrics through a real gunicorn (2 workers x 8 threads)."""

from __future__ import annotations

import http.client
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import Gunicorn, committed_tenant

pytestmark = pytest.mark.live


def test_parallel_clients_get_exactly_the_plan_limit_then_metrics_show_it(tenants, django_db_blocker):
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token
    from apps.billing.models import Plan

    with django_db_blocker.unblock(), committed_tenant("limited") as tenant:
        Plan.objects.filter(code="free").update(rate_limit_per_minute=10)
        try:
            owner = User.objects.get(email="owner@limited.test")
            headers = {"Host": "limited.localhost",
                       "Authorization": f"Bearer {issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)}"}
            with Gunicorn(workers=2) as server:
                with ThreadPoolExecutor(max_workers=20) as pool:
                    statuses = list(pool.map(
                        lambda _: requests.get(f"{server.url}/api/v1/me", headers=headers, timeout=10).status_code,
                        range(40)))
                metrics = requests.get(f"{server.ops_url}/metrics", timeout=10).text
        finally:
            Plan.objects.filter(code="free").update(rate_limit_per_minute=120)
    # 40 requests from 20 parallel clients over two processes: one shared,
    # atomic bucket (refill during the burst: 10/min, well under one token).
    assert statuses.count(200) == 10 and statuses.count(429) == 30
    refused = re.search(r'^saas_rate_limited_total\{scope="all",tier="free"\} (\S+)$', metrics, re.MULTILINE)
    assert refused and float(refused.group(1)) == 30


# The proxy of the tests below: connections from 127.0.0.2 (Linux answers
# all of 127/8 on loopback) come from a trusted proxy, from 127.0.0.1 not.
PROXY = "127.0.0.2"


def post_from(server: Gunicorn, source: str, path: str, body: str, **headers: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=(source, 0))
    try:
        connection.request("POST", path, body=body,
                           headers={"Host": "alpha.localhost", "Content-Type": "application/json", **headers})
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def proxied_server(tenants):
    with Gunicorn(workers=2, env={"TRUSTED_PROXIES": f"{PROXY}/32",
                                  "RATE_LIMIT_ANON_ADDRESS_PER_MINUTE": "3"}) as server:
        yield server


def test_forwarded_for_from_an_untrusted_peer_is_ignored(proxied_server):
    # A client naming a new address each time still has one bucket: its own.
    statuses = [post_from(proxied_server, "127.0.0.1", "/api/v1/auth/token", "{",
                          **{"X-Forwarded-For": f"198.51.100.{n}"})[0] for n in range(5)]
    assert statuses == [400, 400, 400, 429, 429]


def test_forwarded_for_from_a_trusted_proxy_names_the_client(proxied_server):
    def attempt(forwarded: str):
        return post_from(proxied_server, PROXY, "/api/v1/auth/token", "{", **{"X-Forwarded-For": forwarded})

    # Distinct clients behind the proxy: a full bucket each.
    for n in range(5):
        status, headers = attempt(f"203.0.113.{n}")
        assert (status, headers["RateLimit-Remaining"]) == (400, "2")
    # One client that prepends made-up hops: the proxy's hop is what counts.
    statuses = [attempt(f"10.9.9.{n}, 192.0.2.77")[0] for n in range(5)]
    assert statuses == [400, 400, 400, 429, 429]


def test_parallel_password_guesses_cannot_outrun_the_account_count(proxied_server):
    # 20 guesses at once from 20 addresses: only the account's 5 free attempts
    # check a password; the rest are refused before, whatever their timing.
    body = json.dumps({"email": "owner@alpha.test", "password": "guess"})
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(
            lambda n: post_from(proxied_server, PROXY, "/api/v1/auth/token", body,
                                **{"X-Forwarded-For": f"198.51.100.{n}"}), range(20)))
    statuses = [status for status, _ in answers]
    assert statuses.count(403) == 5 and statuses.count(429) == 15
    assert all(int(headers["Retry-After"]) >= 1 for status, headers in answers if status == 429)
