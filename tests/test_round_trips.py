"""What one document read costs in round trips, and that what the request
path holds in process memory never outlives a change of access.

Budgets: a cached read makes no SQL statement and at most two Redis round
trips; an uncached one at most one statement on the shard besides setting
the schema, and none on the control database. Revoking a key, removing a
member, suspending a tenant and changing its plan take effect on the very
next request, with every worker's caches warm (a real gunicorn, 2 workers).
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connections
from django.test.utils import CaptureQueriesContext
from redis.connection import AbstractConnection

from apps.accounts.models import ApiKey, Membership, User
from apps.accounts.services import api_key_create, api_key_revoke, membership_grant
from apps.accounts.tokens import issue_user_token
from apps.api.endpoints.content import DocumentOutput, document_data
from apps.billing.models import Plan
from apps.content.models import Document
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from conftest import ApiClient
from tests.support import Gunicorn, committed_tenant

SCHEMA_STATEMENT = "SET search_path"


@contextmanager
def redis_round_trips():
    """What this thread sends to Redis, one entry per round trip (a command,
    or a whole pipeline); the health probe's thread is not counted. Entries
    are the packed commands. (The operator console's per-tenant traffic
    counter is flushed by its own thread, never on the request's.)"""
    sent: list[bytes] = []
    me = threading.get_ident()
    original = AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        if threading.get_ident() == me:
            sent.append(b"".join(command) if isinstance(command, list | tuple) else command)
        return original(self, command, check_health)

    AbstractConnection.send_packed_command = counting
    try:
        yield sent
    finally:
        AbstractConnection.send_packed_command = original


@contextmanager
def sql_statements():
    """alias -> the statements it ran, on every configured database."""
    with ExitStack() as stack:
        captured = {alias: stack.enter_context(CaptureQueriesContext(connections[alias]))
                    for alias in settings.DATABASES}
        found: dict[str, list[str]] = {}
        yield found
    for alias, context in captured.items():
        found[alias] = [q["sql"] for q in context.captured_queries]


def read(client: ApiClient, doc_id: int):
    response = client.get(f"documents/{doc_id}")
    assert response.status_code == 200, response.content
    return response


@pytest.fixture
def keyed(alpha, api):
    """An API key's client on alpha, a document, and the key's warm caches."""
    client = api(alpha, via="key", scopes=["read"])
    with tenant_activated(alpha):
        doc = Document.objects.create(title="measured", body="x" * 200, tags=["a"])
    read(client, doc.pk)  # warms host, key, plan; records the key's use
    return client, doc


def test_a_cached_read_makes_no_statement_and_two_redis_round_trips(keyed):
    client, doc = keyed
    read(client, doc.pk)  # the entry is now in Redis
    with sql_statements() as statements, redis_round_trips() as trips:
        read(client, doc.pk)
    assert {alias: sql for alias, sql in statements.items() if sql} == {}
    assert len(trips) <= 2, trips


def test_an_uncached_read_makes_one_statement_on_the_shard_and_none_on_the_control_plane(keyed, settings):
    client, doc = keyed
    settings.TENANT_CACHE_ENABLED = False
    with sql_statements() as statements, redis_round_trips() as trips:
        read(client, doc.pk)
    shard = client.tenant.shard.alias
    assert statements["default"] == [] or shard == "default"
    on_shard = [sql for sql in statements[shard] if not sql.startswith(SCHEMA_STATEMENT)]
    assert len(on_shard) == 1 and "content_document" in on_shard[0], statements
    others = {alias: sql for alias, sql in statements.items() if sql and alias not in (shard, "default")}
    assert others == {}
    assert len(trips) <= 2, trips


def test_the_lean_output_is_the_serializers_output(keyed):
    _, doc = keyed
    with tenant_activated(keyed[0].tenant):
        document = Document.objects.get(pk=doc.pk)
        assert document_data(document) == dict(DocumentOutput(document).data)


def test_warm_caches_see_a_revoked_key_a_removed_member_and_a_suspension_at_once(alpha, api):
    key_client = api(alpha, via="key", scopes=["read"])
    member_client = api(alpha, role="member")
    with tenant_activated(alpha):
        doc = Document.objects.create(title="d")
    for client in (key_client, member_client):
        read(client, doc.pk)
        read(client, doc.pk)
    api_key_revoke(api_key=ApiKey.objects.get(tenant=alpha, revoked_at__isnull=True, name="test key"))
    assert key_client.get(f"documents/{doc.pk}").status_code == 401
    Membership.objects.filter(user=member_client.principal, tenant=alpha).get().delete()
    assert member_client.get(f"documents/{doc.pk}").status_code == 403
    alpha.status = Tenant.Status.SUSPENDED
    alpha.save()
    assert key_client.get(f"documents/{doc.pk}").status_code == 403


# --- across the workers of a real gunicorn ----------------------------------


@pytest.fixture
def committed(tenants, django_db_blocker):
    """Committed rows for a live server: a tenant of its own with a member's
    token, an API key and a document; all removed afterwards."""
    with django_db_blocker.unblock():
        with committed_tenant("roundtrips") as tenant:
            user = User.objects.create_user(email="member@roundtrips.example", password="password-123")
            membership = membership_grant(user=user, tenant_id=tenant.pk, role="member")
            key = api_key_create(tenant_id=tenant.pk, name="round trips", scopes=["read"], created_by=user)
            with tenant_activated(tenant):
                doc = Document.objects.create(title="live")
            try:
                yield {"tenant": tenant, "user": user, "membership": membership, "key": key, "doc": doc,
                       "token": issue_user_token(user_id=user.pk, tenant_id=tenant.pk)}
            finally:
                User.objects.filter(pk=user.pk).delete()
        Plan.objects.filter(code="round-trips-cheap").delete()


@pytest.fixture(scope="module")
def server(tenants):
    # The access log names the worker (pid) that answered each request, and
    # the request by its X-Request-Id (the API refuses query parameters that
    # an operation does not take, so a tag there would be a 400).
    access = "--access-logfile - --access-logformat 'served %(p)s %(s)s %({x-request-id}i)s'"
    with Gunicorn(workers=2, env={"LOG_LEVEL": "WARNING", "GUNICORN_CMD_ARGS": access}) as running:
        yield running


def by_worker(server: Gunicorn, path: str, headers: dict, phase: str) -> dict[str, set[int]]:
    """pid -> statuses, from fresh connections (gunicorn's workers take
    turns accepting) until both workers have answered at least twice."""
    for attempt in range(80):
        requests.get(f"{server.url}{path}", headers={**headers, "X-Request-Id": f"{phase}-{attempt}"}, timeout=10)
        seen: dict[str, list[int]] = {}
        for line in server.log_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "served" and parts[3].startswith(f"{phase}-"):
                seen.setdefault(parts[1], []).append(int(parts[2]))
        if len(seen) == 2 and all(len(codes) >= 2 for codes in seen.values()):
            return {pid: set(codes) for pid, codes in seen.items()}
    raise AssertionError(f"both workers did not answer: {seen}")


def live_callers(committed: dict, server: Gunicorn):
    """Headers of the API key and of the member's token on the committed
    tenant, and ``answers(headers, phase)``: the statuses every worker gave
    for its document."""
    host = {"Host": f"{committed['tenant'].slug}.localhost"}
    by_key = {**host, "Authorization": f"Bearer {committed['key'].key}"}
    by_token = {**host, "Authorization": f"Bearer {committed['token']}"}
    path = f"/api/v1/documents/{committed['doc'].pk}"

    def answers(headers, phase: str) -> set[int]:
        return set().union(*by_worker(server, path, headers, phase).values())

    return by_key, by_token, answers


@pytest.mark.live
def test_changes_take_effect_on_the_next_request_in_every_worker(committed, server):
    tenant = committed["tenant"]
    by_key, by_token, answers = live_callers(committed, server)

    assert answers(by_key, "warm-key") == {200}
    assert answers(by_token, "warm-token") == {200}

    api_key_revoke(api_key=ApiKey.objects.get(pk=committed["key"].api_key.pk))
    assert answers(by_key, "revoked") == {401}

    committed["membership"].delete()
    assert answers(by_token, "removed") == {403}
    membership_grant(user=committed["user"], tenant_id=tenant.pk, role="member")
    assert answers(by_token, "readmitted") == {200}

    cheap = Plan.objects.create(code="round-trips-cheap", name="Cheap", rank=990, rate_limit_per_minute=1,
                                max_documents=10, max_events_per_month=10, max_seats=10, max_api_keys=10)
    row = Tenant.objects.get(pk=tenant.pk)
    row.plan = cheap
    row.save()
    assert 429 in answers(by_token, "cheap-plan")

    row.status = Tenant.Status.SUSPENDED
    row.save()
    assert answers(by_token, "suspended") == {403}


def push_connections(server: Gunicorn) -> dict[int, int]:
    """Worker pid -> client id of its push connection (apps.caching.pushed), from CLIENT LIST."""
    import redis

    workers = {int(pid) for pid in Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
               .read_text().split()}
    found = {}
    for entry in redis.Redis.from_url(settings.REDIS_URL).client_list():
        name = entry.get("name", "")
        if name.startswith("push-") and int(name[5:]) in workers:
            found[int(name[5:])] = int(entry["id"])
    return found


@pytest.mark.live
def test_a_killed_push_connection_never_lets_a_revoked_key_through(committed, server):
    """The workers hold versions while Redis pushes changes; with their push
    connections killed, a change made right after must still fail the next
    request in every worker (nothing held is used), and once they have
    subscribed again, changes are pushed to them as before."""
    import redis

    by_key, by_token, answers = live_callers(committed, server)

    assert answers(by_key, "push-warm-key") == {200}
    assert answers(by_token, "push-warm-token") == {200}
    before = push_connections(server)
    assert len(before) == 2, before  # both workers hold versions under pushes
    admin = redis.Redis.from_url(settings.REDIS_URL)
    for client_id in before.values():
        admin.client_kill_filter(_id=client_id)

    api_key_revoke(api_key=ApiKey.objects.get(pk=committed["key"].api_key.pk))  # no push can reach them
    assert answers(by_key, "push-killed-revoked") == {401}

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        again = push_connections(server)
        if len(again) == 2 and not set(again.values()) & set(before.values()):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the workers did not subscribe again: {push_connections(server)}")
    assert answers(by_token, "push-back-warm") == {200}
    committed["membership"].delete()
    assert answers(by_token, "push-back-removed") == {403}
