"""Offboarding and erasure, proven by search: a marker planted in every place
a tenant can write is found nowhere afterwards (every table of every schema
of every database, shards and replicas; every Redis key and value; the
export storage), while a tenant with the same data is untouched."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from apps.lifecycle.tests import scan
from apps.lifecycle.tests.seed import plant


class Api:
    """A committed member's JSON client for one tenant host (no test transaction)."""

    def __init__(self, tenant, email: str, role: str = "owner"):
        from apps.accounts.models import User
        from apps.accounts.services import membership_grant
        from apps.accounts.tokens import issue_user_token

        self.principal = User.objects.filter(email=email).first() or User.objects.create_user(email=email,
                                                                                               password="pw-12345678")
        membership_grant(user=self.principal, tenant_id=tenant.pk, role=role)
        token = issue_user_token(user_id=self.principal.pk, tenant_id=tenant.pk)
        self.client = Client(HTTP_HOST=f"{tenant.slug}.localhost", HTTP_AUTHORIZATION=f"Bearer {token}")

    def _send(self, method, path, body=None, **headers):
        import json

        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        if body is not None:
            extra.update(data=json.dumps(body), content_type="application/json")
        return getattr(self.client, method)(f"/api/v1/{path}", **extra)

    def get(self, path, **headers):
        return self._send("get", path, **headers)

    def post(self, path, body=None, **headers):
        return self._send("post", path, body or {}, **headers)

    def patch(self, path, body=None, **headers):
        return self._send("patch", path, body or {}, **headers)

    def delete(self, path, **headers):
        return self._send("delete", path, **headers)


def plant_beyond_the_api(tenant, marker: str, email: str) -> None:
    """What the API does not reach: cached entries, keys of every kind the
    platform builds for a tenant, a dead letter, an operator's action."""
    from django.conf import settings

    from apps.backoffice.console import traffic
    from apps.backoffice.models import OperatorAction
    from apps.caching.connections import redis_client
    from apps.jobs import fairness
    from apps.jobs.models import DeadLetter
    from apps.tenancy import tenant_cache
    from apps.tenancy.activation import tenant_activated
    from apps.webhooks.wakeups import flag_key

    with tenant_activated(tenant):
        tenant_cache.get_or_compute("lifecycle-test", "k", lambda: {"cached": marker})
    client = redis_client()
    slots, parked = fairness._keys("default", tenant.pk)
    client.zadd(slots, {f"task-{marker}": 1})
    client.lpush(parked, f'{{"task": "{marker}"}}')
    client.sadd(f"{settings.CACHES['default']['KEY_PREFIX']}:fair:parked-lists", parked)
    client.hset(traffic.bucket_key(tenant.pk, 1), "requests", 1)
    client.lpush(traffic.errors_key(tenant.pk), f"500 /api/v1/{marker}")
    client.set(flag_key(tenant.pk), marker)
    client.set(f"{settings.RATE_LIMIT_PREFIX}:t:{tenant.pk}:search", marker)
    DeadLetter.objects.create(task_name="x", task_id="1", tenant_id=tenant.pk, tenant_slug=tenant.slug,
                              args=[marker], exception=marker, first_failed_at="2026-01-01T00:00Z",
                              last_failed_at="2026-01-01T00:00Z")
    OperatorAction.objects.create(kind="tenant.suspend", actor_email="op@platform.test", reason=marker,
                                  target=f"tenant {tenant.slug}", tenant_id=tenant.pk)
    from apps.accounts.models import ApiKey

    assert ApiKey.objects.filter(tenant=tenant, name__contains=marker).exists()


def kept_data(matches: dict) -> dict:
    """Matches outside the erased tenant's schema (the shared member's email
    is in its webhook events too), without the task system's own bookkeeping
    (outbox rows, job records), which changes on its own while the test runs."""
    return {place: n for place, n in matches.items()
            if ":t_erase_me." not in place and not place.split(".", 1)[1].startswith("jobs_")}


def of_tenant(path: str, tenant) -> bool:
    """A file of ``tenant``'s (the shared member's email is in its archive too)."""
    return any(part in path for part in (f"/tenant-exports/{tenant.pk}/", f"/work/{tenant.pk}/",
                                         f"/exports/{tenant.slug}/"))


def exports_finished(*tenants, timeout: float = 20.0) -> None:
    """Outbox tasks run on the relay's thread once their request commits: wait for the exports' files."""
    import time

    from apps.reports.models import ExportRequest
    from apps.tenancy.activation import tenant_activated

    deadline = time.monotonic() + timeout
    for tenant in tenants:
        with tenant_activated(tenant):
            while ExportRequest.objects.exclude(status="done").exists():
                assert time.monotonic() < deadline, "the export did not finish"
                time.sleep(0.1)


def archive_and_leave_parts(tenant) -> None:
    """A finished whole-tenant archive, and an interrupted export's parts in the work directory."""
    from apps.lifecycle import exporting, services

    exporting.export_run(services.export_request(tenant=tenant, requested_by_id=None, enqueue=False).pk)
    interrupted = services.export_request(tenant=tenant, requested_by_id=None, enqueue=False)

    def killed(export, name):
        if name.startswith("tables/content_document"):
            raise SystemExit("worker killed")

    real, exporting.after_part = exporting.after_part, killed
    try:
        exporting.export_run(interrupted.pk)
    except SystemExit:
        pass
    finally:
        exporting.after_part = real


@pytest.fixture
def storage(tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TENANT_EXPORT_WORK_DIR = str(tmp_path / "work")
    # A failed send (the index task of a document deleted at once) must not
    # leave the next requests' tasks to a sweep that tests do not run.
    settings.OUTBOX_RELAY_PAUSE_SECONDS = 0


@pytest.fixture
def two_tenants(tenants, django_db_blocker, outbox_inline, storage):
    """Two committed tenants with the same kind of data: one on shard b (with
    a replica) to erase, one on main to keep."""
    from apps.accounts.models import User
    from tests.support import committed_tenant

    marker, kept_marker = f"Mk{uuid.uuid4().hex[:10]}", f"Kp{uuid.uuid4().hex[:10]}"
    with django_db_blocker.unblock():
        with committed_tenant("erase-me", shard="b") as gone, committed_tenant("keep-me") as kept:
            gone_api = Api(gone, f"owner.{marker.lower()}@example.test")
            both = Api(gone, f"shared.{kept_marker.lower()}@example.test", role="member")
            Api(kept, both.principal.email, role="member")
            kept_api = Api(kept, f"owner.{kept_marker.lower()}@example.test")
            plant(gone_api, marker)
            plant(kept_api, kept_marker)
            exports_finished(gone, kept)
            archive_and_leave_parts(gone)
            archive_and_leave_parts(kept)
            plant_beyond_the_api(gone, marker, gone_api.principal.email)
            plant_beyond_the_api(kept, kept_marker, kept_api.principal.email)
            # The erased owner is named in the kept tenant's audit log.
            from apps.audit.services import audit_record
            from apps.tenancy.activation import tenant_activated

            with tenant_activated(kept):
                audit_record(action="update", object_type="note", object_id=1,
                             changes={"email": [None, gone_api.principal.email]})
            try:
                yield {"gone": gone, "kept": kept, "marker": marker, "kept_marker": kept_marker,
                       "owner": gone_api.principal, "shared": both.principal}
            finally:
                User.objects.filter(email__icontains=marker).delete()
                User.objects.filter(email__icontains=kept_marker).delete()


def test_erasure_leaves_no_trace_and_the_other_tenant_untouched(two_tenants, django_db_blocker):
    from apps.accounts.models import User
    from apps.lifecycle import erasure, services
    from apps.lifecycle.models import Offboarding
    from apps.tenancy.models import Tenant

    gone, marker = two_tenants["gone"], two_tenants["marker"]
    kept_marker = two_tenants["kept_marker"]
    with django_db_blocker.unblock():
        scan.wait_for_replicas()
        before = scan.database_matches(marker)
        assert any(":t_erase_me." in place for place in before) and any("public." in p for p in before)
        assert scan.redis_matches(marker)
        planted_files = scan.file_matches(marker)
        assert any("/tenant-exports/" in f for f in planted_files) and any("/work/" in f for f in planted_files)
        assert any("/exports/erase-me/" in f for f in planted_files)
        kept_rows = scan.database_matches(kept_marker)
        kept_keys, kept_files = scan.redis_matches(kept_marker), scan.file_matches(kept_marker)

        offboarding = services.offboard_request(tenant=gone, requested_as="owner",
                                                requested_by_id=two_tenants["owner"].pk,
                                                requested_by=two_tenants["owner"].email, now=True)
        assert Tenant.objects.get(pk=gone.pk).is_suspended
        erased = erasure.erase_claimed(offboarding.pk)
        assert erased is not None and erased.status == Offboarding.Status.ERASED, offboarding.error
        scan.wait_for_replicas()

        assert scan.database_matches(marker) == {}
        assert scan.redis_matches(marker) == []
        assert scan.file_matches(marker) == []
        assert kept_data(scan.database_matches(kept_marker)) == kept_data(kept_rows)
        assert scan.redis_matches(kept_marker) == kept_keys
        assert set(scan.file_matches(kept_marker)) == {f for f in kept_files if not of_tenant(f, gone)}
        # The record stays and says what, when and who (a pseudonym now: the owner is erased).
        record = Offboarding.objects.get(pk=offboarding.pk)
        assert record.erased_at and record.erased["schemas"] == ["shard_b:t_erase_me"]
        assert record.requested_by == erasure.pseudonym(two_tenants["owner"].pk)
        assert not User.objects.filter(pk=two_tenants["owner"].pk).exists()
        assert User.objects.filter(pk=two_tenants["shared"].pk).exists()  # still a member of the kept tenant
        assert scan.database_matches(erasure.pseudonym(two_tenants["owner"].pk))


def test_every_control_plane_table_that_references_a_tenant_is_covered(two_tenants, django_db_blocker):
    """Listed from the catalog independently of the code under test: every
    foreign key to the registry and every column named like a tenant
    reference; after an erasure none holds a row of the tenant but the record."""
    from django.db import connections

    from apps.lifecycle import erasure, services

    gone = two_tenants["gone"]
    with django_db_blocker.unblock():
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT c.conrelid::regclass::text, a.attname FROM pg_constraint c JOIN pg_attribute a "
                "ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) WHERE c.contype = 'f' "
                "AND c.confrelid = 'tenancy_tenant'::regclass "
                "UNION SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND column_name IN ('tenant_id', 'tenant') ORDER BY 1")
            references = cursor.fetchall()
        tables = {table for table, _ in references}
        assert {"tenancy_domain", "accounts_membership", "accounts_invitation", "accounts_apikey",
                "accounts_supportgrant", "accounts_passwordreset", "billing_planchange", "flags_flag_tenants",
                "tenancy_move", "jobs_deadletter", "backoffice_operatoraction", "lifecycle_tenantexport",
                "lifecycle_offboarding"} <= tables
        offboarding = services.offboard_request(tenant=gone, requested_as="operator", requested_by="op@platform.test",
                                                reason="test", now=True)
        assert erasure.erase_claimed(offboarding.pk) is not None
        with connections["default"].cursor() as cursor:
            left = {}
            for table, column in references:
                cursor.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" = %s', [gone.pk])
                left[table] = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM jobs_deadletter WHERE tenant_slug = %s", [gone.slug])
            assert cursor.fetchone()[0] == 0
            cursor.execute("SELECT count(*) FROM jobs_outboxmessage WHERE headers->>'tenant_id' = %s", [str(gone.pk)])
            assert cursor.fetchone()[0] == 0
    assert {t: n for t, n in left.items() if n} == {"lifecycle_offboarding": 1}
