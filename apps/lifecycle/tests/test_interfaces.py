"""The API, the tenant admin, the operator console and the commands, each
acting on its own tenant only."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from django.test import Client

from apps.lifecycle.models import Offboarding, TenantExport
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_jobs(django_capture_on_commit_callbacks, outbox_inline, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TENANT_EXPORT_WORK_DIR = str(tmp_path / "work")

    def run(action, using="default"):
        with django_capture_on_commit_callbacks(execute=True, using=using):
            return action()

    return run


def status_of(tenant) -> str:
    return Tenant.objects.get(pk=tenant.pk).status


# --- API -----------------------------------------------------------------------------------


def test_an_owner_exports_the_whole_tenant_through_the_api(api, alpha, gamma, run_jobs):
    owner = api(alpha)
    created = run_jobs(lambda: owner.post("tenant-exports"))
    assert created.status_code == 202, created.content
    status = owner.get(created["Location"].removeprefix("/api/v1/")).json()
    assert status["status"] == "done" and status["percent"] == 100 and status["parts_done"] == status["parts_total"]
    download = owner.client.get(status["download_url"], HTTP_AUTHORIZATION="")
    assert download.status_code == 200 and download["Content-Type"] == "application/x-tar", download.content
    with tarfile.open(fileobj=io.BytesIO(b"".join(download.streaming_content))) as tar:
        assert json.load(tar.extractfile("manifest.json"))["tenant"]["slug"] == "alpha"
    assert [e["id"] for e in owner.get("tenant-exports").json()] == [status["id"]]
    # Not an admin's, not another tenant's: neither the status nor the link.
    assert api(alpha, role="admin").get(f"tenant-exports/{status['id']}").status_code == 403
    assert api(alpha, role="admin").post("tenant-exports").status_code == 403
    other = api(gamma)
    assert other.get(f"tenant-exports/{status['id']}").status_code == 404
    assert other.client.get(status["download_url"], HTTP_AUTHORIZATION="").status_code == 404
    assert other.get("tenant-exports").json() == []


def test_an_owner_deletes_the_tenant_and_it_is_suspended_at_once(api, alpha, beta):
    member, owner = api(alpha, role="admin"), api(alpha)
    assert member.post("offboarding", {"confirm": "alpha"}).status_code == 403
    assert owner.post("offboarding", {"confirm": "beta"}).status_code == 400
    assert owner.post("offboarding", {"confirm": "alpha", "extra": 1}).status_code == 400
    done = owner.post("offboarding", {"confirm": "alpha", "reason": "moving on"})
    assert done.status_code == 202, done.content
    assert done.json()["status"] == "scheduled" and status_of(alpha) == "suspended"
    assert owner.get("documents").status_code == 403
    assert status_of(beta) == "active" and not Offboarding.objects.filter(tenant_id=beta.pk).exists()
    record = Offboarding.objects.get(tenant_id=alpha.pk)
    assert record.requested_as == "owner" and record.requested_by == owner.principal.email


# --- tenant admin ----------------------------------------------------------------------------


def browser(tenant, user) -> Client:
    client = Client(HTTP_HOST=f"{tenant.slug}.localhost")
    client.force_login(user)
    return client


def test_the_tenant_admin_page_archives_and_deletes_for_owners_only(api, alpha, gamma, run_jobs):
    owner, admin = api(alpha).principal, api(alpha, role="admin").principal
    page = browser(alpha, owner).get("/admin/data/")
    assert page.status_code == 200 and b"Archive all data" in page.content and b"Delete alpha" in page.content
    seen_by_admin = browser(alpha, admin).get("/admin/data/")
    assert seen_by_admin.status_code == 200 and b"Archive all data" not in seen_by_admin.content
    run_jobs(lambda: browser(alpha, owner).post("/admin/data/archive/"))
    assert TenantExport.objects.filter(tenant=alpha, status="done").count() == 1
    assert b'class="export-download"' in browser(alpha, owner).get("/admin/data/").content
    assert b'class="export-download"' not in browser(gamma, api(gamma).principal).get("/admin/data/").content
    browser(alpha, admin).post("/admin/data/archive/")
    assert TenantExport.objects.filter(tenant=alpha).count() == 1
    assert browser(alpha, admin).post("/admin/data/delete/", {"confirm": "alpha"}).status_code == 302
    assert browser(alpha, owner).post("/admin/data/delete/", {"confirm": "gamma"}).status_code == 400
    assert status_of(alpha) == "active"
    gone = browser(alpha, owner).post("/admin/data/delete/", {"confirm": "alpha"})
    assert gone.status_code == 200 and b"is deleted" in gone.content
    assert status_of(alpha) == "suspended" and status_of(gamma) == "active"


# --- console ---------------------------------------------------------------------------------


@pytest.fixture
def ops(tenants):
    from apps.accounts.models import User

    User.objects.create_superuser(email="ops@lifecycle.test", password="ops-pass")
    client = Client(HTTP_HOST="localhost")
    assert client.post("/admin/login/?next=/admin/", {"username": "ops@lifecycle.test",
                                                      "password": "ops-pass"}).status_code == 302
    return client


def test_the_console_offboards_undoes_and_archives_with_a_reason(ops, alpha, beta, run_jobs):
    from apps.backoffice.models import OperatorAction

    base = "/admin/console/tenants/alpha/"
    assert ops.post(f"{base}offboard/", {"reason": ""}).status_code == 200  # the form again: a reason is needed
    assert status_of(alpha) == "active"
    assert ops.post(f"{base}offboard/", {"reason": "contract ended"}).status_code == 302
    assert status_of(alpha) == "suspended" and status_of(beta) == "active"
    assert b"scheduled" in ops.get(base).content
    assert ops.post(f"{base}offboard-undo/", {"reason": "asked back"}).status_code == 302
    assert status_of(alpha) == "active"
    assert Offboarding.objects.get(tenant_id=alpha.pk).status == "cancelled"
    run_jobs(lambda: ops.post(f"{base}export-whole/", {"reason": "owner asked by phone"}))
    assert TenantExport.objects.get(tenant=alpha).status == "done"
    assert b"data-tenant-export" in ops.get(base).content
    kinds = list(OperatorAction.objects.filter(tenant_id=alpha.pk).values_list("kind", flat=True))
    assert sorted(kinds) == ["tenant.export", "tenant.offboard", "tenant.offboard_undo"]


# --- commands --------------------------------------------------------------------------------


def test_the_commands_export_import_offboard_undo_and_erase(alpha, tmp_path, run_jobs):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from apps.tenancy import schemas
    from tests.support import command_output

    out = tmp_path / "alpha.tar"
    assert "written to" in command_output("export_tenant", "alpha", "--out", str(out))
    assert "created on shard b" in command_output("import_tenant", str(out), "--slug", "alpha-two", "--shard", "b")
    copy = Tenant.objects.get(slug="alpha-two")
    with pytest.raises(CommandError, match="--reason"):
        call_command("offboard_tenant", "alpha-two")
    assert "suspended" in command_output("offboard_tenant", "alpha-two", "--reason", "a test")
    assert "cancelled" in command_output("offboard_tenant", "alpha-two", "--undo")
    assert status_of(copy) == "active"
    assert "erased" in command_output("offboard_tenant", "alpha-two", "--reason", "a test", "--now")
    assert not Tenant.objects.filter(slug="alpha-two").exists()
    assert not schemas.schema_exists("shard_b", "t_alpha_two")
    assert status_of(alpha) == "active"
