"""Moving a tenant between shards on real servers: no row lost, or no change."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError
from django.test import Client

from apps.audit.models import AuditEntry
from apps.content.models import Document
from apps.content.services import document_create
from apps.partitions.partitions import month_start
from apps.tenancy import moves, schemas
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Shard, Tenant
from tests.support import committed_tenant, temporary_shard

TABLES = ["audit_entry", "content_document", "search_searchentry"]


def fill(tenant: Tenant, documents: int = 120) -> None:
    today = dt.date.today()
    with tenant_activated(tenant):
        for i in range(documents):
            document_create(title=f"doc {i}", body="x" * (i % 50), author_id=i)
        for offset in (-1, 0, 1):
            when = dt.datetime.combine(month_start(today, offset), dt.time(12), tzinfo=dt.UTC)
            AuditEntry.objects.create(actor_type="system", action="create", object_type="test.event",
                                      object_id=str(offset), occurred_at=when)
        Document.objects.filter(title="doc 3").delete()  # a gap in the ids


def fingerprints(tenant: Tenant) -> dict:
    tenant.refresh_from_db()
    return {t: moves.table_fingerprint(tenant.shard.alias, tenant.schema_name, t) for t in TABLES}


def other_shard_name(tenant: Tenant) -> str:
    return "b" if tenant.shard.name == "main" and Shard.objects.filter(name="b").exists() else "main"


def test_move_preserves_every_row_and_checksum(tenants, django_db_blocker):
    with django_db_blocker.unblock(), committed_tenant("mover") as tenant:
        fill(tenant)
        before = fingerprints(tenant)
        source = tenant.shard
        target = Shard.objects.get(name=other_shard_name(tenant))
        if target == source:
            pytest.skip("needs two shards")
        out = StringIO()
        call_command("move_tenant", "mover", target.name, stdout=out)
        assert "writes frozen" in out.getvalue()
        tenant.refresh_from_db()
        assert tenant.shard == target and not tenant.writes_frozen
        assert fingerprints(tenant) == before
        assert before["content_document"][0] == 119 and before["audit_entry"][0] == 3 + 120
        assert not schemas.schema_exists(source.alias, "t_mover")
        assert not [s for s in schemas.existing_schemas(source.alias, ["t_mover"])]
        with tenant_activated(Tenant.objects.select_related("shard").get(pk=tenant.pk)):
            newest = max(Document.objects.values_list("id", flat=True))
            created = document_create(title="after the move")  # identity sequence carried over
            assert created.pk > newest
            month = dt.datetime.combine(month_start(dt.date.today()), dt.time(0), tzinfo=dt.UTC)
            assert AuditEntry.objects.filter(occurred_at__gte=month, object_type="test.event").count() == 2


def test_a_copy_killed_midway_leaves_the_tenant_on_its_source(tenants, django_db_blocker, monkeypatch):
    with django_db_blocker.unblock(), committed_tenant("crashy") as tenant:
        fill(tenant, documents=30)
        before = fingerprints(tenant)
        source = tenant.shard
        target = Shard.objects.get(name=other_shard_name(tenant))
        copied = []
        real_copy = moves._copy_table

        def copy_then_die(src, dst, schema, table, columns):
            if copied:
                raise OperationalError("copy process killed")
            copied.append(table)
            return real_copy(src, dst, schema, table, columns)

        monkeypatch.setattr(moves, "_copy_table", copy_then_die)
        with pytest.raises(CommandError, match="stays on its source shard"):
            call_command("move_tenant", "crashy", target.name, stdout=StringIO())
        tenant.refresh_from_db()
        assert tenant.shard == source and not tenant.writes_frozen
        assert fingerprints(tenant) == before
        assert not schemas.schema_exists(target.alias, "t_crashy")
        client = Client(HTTP_HOST="crashy.localhost")
        client.post("/admin/login/?next=/admin/", {"username": "owner@crashy.test", "password": "crashy-pass"})
        assert client.post("/admin/content/document/add/", {"title": "still writable", "status": "draft"}).status_code == 302


def test_target_server_stopped_mid_move_leaves_the_tenant_intact(tenants, django_db_blocker, monkeypatch):
    with django_db_blocker.unblock(), temporary_shard("target") as (server, target):
        with committed_tenant("stranded") as tenant:
            fill(tenant, documents=20)
            before = fingerprints(tenant)
            real_copy = moves._copy_table

            def stop_target_then_copy(*args):
                server.stop()
                return real_copy(*args)

            monkeypatch.setattr(moves, "_copy_table", stop_target_then_copy)
            with pytest.raises(OperationalError):
                moves.tenant_move(tenant=tenant, target=target)
            tenant.refresh_from_db()
            assert tenant.shard.name == "main" and not tenant.writes_frozen
            assert fingerprints(tenant) == before
            # With the target back, a new attempt clears the leftover and succeeds.
            server.start()
            monkeypatch.setattr(moves, "_copy_table", real_copy)
            moves.tenant_move(tenant=tenant, target=target)
            tenant.refresh_from_db()
            assert tenant.shard == target
            assert fingerprints(tenant) == before


def test_during_a_move_writes_get_503_and_reads_go_on(tenants, django_db_blocker):
    with django_db_blocker.unblock(), committed_tenant("busy") as tenant:
        fill(tenant, documents=5)
        target = Shard.objects.get(name=other_shard_name(tenant))
        client = Client(HTTP_HOST="busy.localhost")
        client.post("/admin/login/?next=/admin/", {"username": "owner@busy.test", "password": "busy-pass"})
        seen = {}

        def probe():
            write = client.post("/admin/content/document/add/", {"title": "during the move", "status": "draft"})
            seen["write"] = (write.status_code, write.get("Retry-After"))
            seen["read"] = client.get("/admin/content/document/").status_code

        moves.tenant_move(tenant=tenant, target=target, before_flip=probe)
        assert seen["write"][0] == 503 and int(seen["write"][1]) > 0
        assert seen["read"] == 200
        assert client.post("/admin/content/document/add/", {"title": "after the move", "status": "draft"}).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "main"], "No tenant with slug 'nobody'"),
        (["alpha", "atlantis"], "No shard named 'atlantis'"),
        (["alpha", "main"], "already on shard 'main'"),
    ],
)
def test_move_command_rejects_bad_input(tenants, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("move_tenant", *args, stdout=StringIO())


@pytest.mark.django_db
def test_move_to_a_read_only_shard_is_refused(tenants):
    Shard.objects.exclude(name="main").update(state=Shard.State.READ_ONLY)
    target = Shard.objects.exclude(name="main").first()
    if target is None:
        pytest.skip("needs two shards")
    with pytest.raises(CommandError, match="takes no tenants"):
        call_command("move_tenant", "alpha", target.name, stdout=StringIO())
    assert Tenant.objects.get(slug="alpha").shard.name == "main"
