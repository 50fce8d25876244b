"""Admission of anonymous callers and password guesses; all buckets of a
request decided at once; client addresses behind trusted proxies."""

from __future__ import annotations

import time

import pytest
from django.test import Client, RequestFactory

from apps.billing.models import Plan
from apps.ratelimit import buckets
from apps.ratelimit.clients import address_key, client_address

pytestmark = pytest.mark.django_db

WRONG = {"password": "not-the-password"}


def anonymous(tenant, address: str = "127.0.0.1") -> Client:
    return Client(HTTP_HOST=f"{tenant.slug}.localhost", REMOTE_ADDR=address)


def token_attempt(client: Client, email: str, password: str):
    return client.post("/api/v1/auth/token", {"email": email, "password": password}, content_type="application/json")


@pytest.fixture
def generous_anonymous_limits(settings):
    """Password tests count guesses, not requests: anonymous buckets out of the way."""
    settings.RATE_LIMIT_ANON_SHARE = 100
    settings.RATE_LIMIT_ANON_ADDRESS_PER_MINUTE = 100_000


# --- anonymous callers have budgets of their own ---------------------------------------------------


def test_an_anonymous_flood_does_not_spend_the_members_budget(api, alpha, settings):
    Plan.objects.filter(code="free").update(rate_limit_per_minute=100)
    owner = api(alpha)
    stranger = anonymous(alpha)
    flood = [stranger.post("/api/v1/auth/token", "{", content_type="application/json") for _ in range(200)]
    statuses = [r.status_code for r in flood]
    # The address's bucket (30 a minute; refill during the flood < 2 tokens) answers first.
    assert 30 <= statuses.count(400) <= 32 and statuses.count(429) == 200 - statuses.count(400)
    refused = flood[-1]
    assert refused["Content-Type"] == "application/problem+json" and int(refused["Retry-After"]) >= 1
    assert refused["RateLimit-Limit"] == str(settings.RATE_LIMIT_ANON_ADDRESS_PER_MINUTE)

    me = owner.get("me")
    assert me.status_code == 200
    # The tenant's bucket never saw the flood: this is its first token.
    assert (me["RateLimit-Limit"], me["RateLimit-Remaining"]) == ("100", "99")


def test_the_tenants_anonymous_bucket_is_shared_by_all_addresses(alpha, settings):
    Plan.objects.filter(code="free").update(rate_limit_per_minute=20)  # anonymous: half, 10 a minute
    statuses = [anonymous(alpha, f"198.51.100.{n}").post("/api/v1/auth/token", "{",
                                                          content_type="application/json").status_code
                for n in range(12)]
    assert statuses == [400] * 10 + [429] * 2


def test_one_tenants_anonymous_flood_leaves_another_tenant_alone(api, alpha, beta):
    stranger = anonymous(alpha)
    statuses = [stranger.post("/api/v1/auth/token", "{", content_type="application/json").status_code
                for _ in range(60)]
    assert statuses[-1] == 429
    # Same address, other tenant: its own anonymous buckets, full.
    other = anonymous(beta).post("/api/v1/auth/token", "{", content_type="application/json")
    assert other.status_code == 400
    assert int(other["RateLimit-Remaining"]) == int(other["RateLimit-Limit"]) - 1
    assert api(beta).get("me").status_code == 200


# --- password guesses ------------------------------------------------------------------------------


def test_wrong_passwords_wait_longer_each_time_and_the_right_one_works_after(api, alpha,
                                                                            generous_anonymous_limits):
    member = api(alpha, role="member").principal  # password "password-123"
    client = anonymous(alpha)
    first = [token_attempt(client, member.email, WRONG["password"]) for _ in range(40)]
    assert [r.status_code for r in first] == [403] * 5 + [429] * 35
    assert {r["Retry-After"] for r in first[5:]} == {"1"}
    assert first[5].json()["type"].endswith("/too-many-attempts")

    waits = []
    for _ in range(2):  # each wait is served, then one more wrong guess: the next wait doubles
        time.sleep(int(waits[-1]) if waits else 1)
        assert token_attempt(client, member.email, WRONG["password"]).status_code == 403
        refused = token_attempt(client, member.email, "password-123")  # even the right one waits
        assert refused.status_code == 429
        waits.append(int(refused["Retry-After"]))
    assert waits == [2, 4]

    time.sleep(waits[-1])
    issued = token_attempt(client, member.email, "password-123")
    assert issued.status_code == 201 and issued.json()["token"]
    # Success starts the account afresh: a typo now is a plain 403, not a lockout.
    assert token_attempt(client, member.email, WRONG["password"]).status_code == 403


def test_an_unknown_email_gets_exactly_the_same_answers(api, alpha, generous_anonymous_limits):
    member = api(alpha, role="member").principal

    def answers(email: str, address: str):
        client = anonymous(alpha, address)
        responses = [token_attempt(client, email, WRONG["password"]) for _ in range(8)]
        return [(r.status_code, r.get("Retry-After"), r.json()) for r in responses]

    known = answers(member.email, "192.0.2.1")
    unknown = answers("nobody-here@alpha.example", "192.0.2.2")
    assert known == unknown
    assert [status for status, _, _ in known] == [403] * 5 + [429] * 3


def test_the_account_is_one_key_whatever_the_spelling_and_address(api, alpha, generous_anonymous_limits):
    member = api(alpha, role="member").principal
    spellings = [member.email, member.email.upper(), f"  {member.email.title()} "]
    statuses = [token_attempt(anonymous(alpha, f"203.0.113.{n}"), spellings[n % 3], "nope").status_code
                for n in range(7)]
    assert statuses == [403] * 5 + [429] * 2


def test_guesses_from_one_address_are_limited_across_accounts(alpha, beta, settings, generous_anonymous_limits):
    settings.RATE_LIMIT_PASSWORD_FAILURES_PER_ADDRESS = 4
    sprayer = anonymous(alpha, "203.0.113.50")
    statuses = [token_attempt(sprayer, f"user{n}@alpha.example", "123456").status_code for n in range(6)]
    assert statuses == [403] * 4 + [429] * 2
    # Another address, and the same address on another tenant, are not locked.
    assert token_attempt(anonymous(alpha, "203.0.113.51"), "user9@alpha.example", "x").status_code == 403
    assert token_attempt(anonymous(beta, "203.0.113.50"), "user9@beta.example", "x").status_code == 403


def test_a_right_password_gives_back_its_address_count_but_not_the_failures(api, alpha, settings,
                                                                           generous_anonymous_limits):
    settings.RATE_LIMIT_PASSWORD_FAILURES_PER_ADDRESS = 4
    member = api(alpha, role="member").principal
    client = anonymous(alpha, "203.0.113.60")
    assert [token_attempt(client, f"u{n}@alpha.example", "x").status_code for n in range(3)] == [403] * 3
    # Signing in to one's own account in between does not wipe the address's failures...
    assert [token_attempt(client, member.email, "password-123").status_code for _ in range(3)] == [201] * 3
    # ... nor count against it: the fourth failure is the one that locks.
    assert token_attempt(client, "u9@alpha.example", "x").status_code == 403
    assert token_attempt(client, "u10@alpha.example", "x").status_code == 429


# --- all buckets at once ---------------------------------------------------------------------------


def test_a_key_refused_by_its_own_bucket_leaves_the_tenant_bucket_unchanged(api, alpha):
    Plan.objects.filter(code="free").update(rate_limit_per_minute=8)  # a key: 4 a minute
    key = api(alpha, via="key", scopes=["read"])
    assert [key.get("me").status_code for _ in range(7)] == [200] * 4 + [429] * 3
    me = api(alpha).get("me")
    # 4 of the tenant's 8 went to the key's accepted requests, 1 to this one; the 3 refusals took none.
    assert (me.status_code, me["RateLimit-Remaining"]) == (200, "3")


def test_a_scope_refusal_takes_nothing_from_the_tenant_or_the_key(api, alpha):
    Plan.objects.filter(code="free").update(rate_limit_per_minute=16)  # key 8, search 4
    key = api(alpha, via="key", scopes=["read"])
    assert [key.get("search?q=x").status_code for _ in range(6)] == [200] * 4 + [429] * 2
    me = key.get("me")
    assert me.status_code == 200 and me["RateLimit-Remaining"] == "3"  # the key's bucket: 8 - 4 - 1


def test_all_buckets_of_a_request_cost_one_redis_round_trip(api, alpha, settings):
    from tests.test_round_trips import redis_round_trips

    key = api(alpha, via="key", scopes=["read"])
    assert key.get("search?q=x").status_code == 200  # tenant, key and search buckets; loads the script
    with redis_round_trips() as trips:
        assert key.get("search?q=x").status_code == 200
    # One script call decides every bucket (its round trip may carry a cache read too).
    prefix = f"{settings.RATE_LIMIT_PREFIX}:".encode()
    admission = [trip for trip in trips if prefix in trip]
    assert len(admission) == 1, trips
    assert admission[0].count(b"EVALSHA") + admission[0].count(b"\r\nEVAL\r\n") == 1
    assert admission[0].count(prefix) >= 3  # the tenant, key and search buckets


def test_the_local_buckets_are_all_or_nothing_too():
    local = buckets.LocalBuckets()
    tenant = buckets.Bucket("t", per_minute=0, burst=10)
    key = buckets.Bucket("k", per_minute=0, burst=2)
    outcomes = [local.take_all([tenant, key])[0] for _ in range(4)]
    assert outcomes == [True, True, False, False]
    assert local.take_all([tenant])[1] == [7.0]  # 10 - 2 accepted - this one


def test_the_local_attempt_counts_follow_the_same_rules(settings):
    from apps.ratelimit.password_attempts import LocalAttempts

    local = LocalAttempts()
    keys, frees = ("account", "address"), (3, 10)
    assert [local.run("begin", keys, frees) for _ in range(3)] == [0.0] * 3
    wait = local.run("begin", keys, frees)
    assert 0 < wait <= 1  # the third attempt locked the account for 1 s
    local.run("succeed", keys, frees)  # the account starts afresh, the address gives back one
    assert local.run("begin", keys, frees) == 0.0


# --- client addresses ------------------------------------------------------------------------------


def request_from(peer: str, forwarded: str | None = None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=peer, **extra)


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = []
    assert str(client_address(request_from("198.51.100.7", "1.2.3.4"))) == "198.51.100.7"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert str(client_address(request_from("198.51.100.7", "1.2.3.4"))) == "198.51.100.7"  # peer not trusted
    assert str(client_address(request_from("10.1.1.1", "1.2.3.4"))) == "1.2.3.4"


def test_forwarded_for_is_walked_from_the_right_past_trusted_hops_only(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::/8"]
    # The client wrote "6.6.6.6" itself; the proxies appended 203.0.113.9 and 10.2.2.2.
    assert str(client_address(request_from("10.1.1.1", "6.6.6.6, 203.0.113.9, 10.2.2.2"))) == "203.0.113.9"
    assert str(client_address(request_from("fd00::1", "[2001:db8::5]:4711, fd00::2"))) == "2001:db8::5"
    assert str(client_address(request_from("10.1.1.1", "203.0.113.9:5000"))) == "203.0.113.9"
    # Garbage where an address should be: the last trusted hop is all that is known.
    assert str(client_address(request_from("10.1.1.1", "not-an-address, 10.2.2.2"))) == "10.2.2.2"
    assert str(client_address(request_from("10.1.1.1", ""))) == "10.1.1.1"


def test_ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4(settings):
    settings.TRUSTED_PROXIES = []
    assert address_key(request_from("2001:db8:1:2:aaaa::1")) == address_key(request_from("2001:db8:1:2:bbbb::9"))
    assert address_key(request_from("2001:db8:1:2::1")) == "2001:db8:1:2::/64"
    assert address_key(request_from("::ffff:192.0.2.1")) == "192.0.2.1"
    assert address_key(request_from("garbage")) == "unknown"


# --- Redis hung --------------------------------------------------------------------------------------


@pytest.mark.live
def test_with_redis_hung_limits_fall_back_to_this_process_quickly_and_all_or_nothing(api, alpha, settings,
                                                                                     monkeypatch):
    import os
    import signal
    from pathlib import Path

    from tests.redis_faults import counting_round_trips
    from tests.workers import RedisBroker

    Plan.objects.filter(code="free").update(rate_limit_per_minute=8)  # a key: 4 a minute
    key = api(alpha, via="key", scopes=["read"])
    owner = api(alpha)
    monkeypatch.setattr(buckets, "local_buckets", buckets.LocalBuckets())
    redis_server = RedisBroker().start()
    pid = int((Path(redis_server.dir) / "redis.pid").read_text().strip())
    settings.REDIS_URL = redis_server.url
    settings.RATE_LIMIT_REDIS_RETRY_SECONDS = 1
    try:
        assert buckets.take("warm-up", per_minute=10).backend == "redis"
        os.kill(pid, signal.SIGSTOP)  # accepts connections, never answers: the worst kind of down
        with counting_round_trips(port=redis_server.port) as sent:
            statuses = [key.get("me").status_code for _ in range(7)]
            me = owner.get("me")
            password = token_attempt(anonymous(alpha), "owner@alpha.test", "wrong")
        # One round trip waits out its timeout (REDIS_TIMEOUT_SECONDS), then the
        # process stops asking for a while; without that, each of the 9
        # requests would send its own and wait out its own timeout.
        assert len(sent) == 1, sent
        assert statuses == [200] * 4 + [429] * 3
        assert (me.status_code, me["RateLimit-Remaining"]) == (200, "3")  # refusals took none locally either
        assert password.status_code == 403
        os.kill(pid, signal.SIGCONT)
        time.sleep(settings.RATE_LIMIT_REDIS_RETRY_SECONDS)
        assert buckets.take("after", per_minute=10).backend == "redis"
    finally:
        os.kill(pid, signal.SIGCONT)
        redis_server.stop()
