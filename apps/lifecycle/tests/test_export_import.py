"""Whole-tenant export and import: completeness, checksums, resume, older archives, isolation."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from apps.lifecycle import catalog, exporting, services
from apps.lifecycle.importing import import_archive
from apps.lifecycle.tests.seed import plant

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_jobs(django_capture_on_commit_callbacks, outbox_inline, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TENANT_EXPORT_WORK_DIR = str(tmp_path / "work")

    def run(action, using="shard_main"):
        with django_capture_on_commit_callbacks(execute=True, using=using):
            return action()

    return run


def export_now(tenant) -> tuple[dict, bytes]:
    from django.core.files.storage import default_storage

    export = services.export_request(tenant=tenant, requested_by_id=None, enqueue=False)
    export = exporting.export_run(export.pk)
    with default_storage.open(export.file_name, "rb") as handle:
        data = handle.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    return manifest, data


@pytest.fixture
def seeded(api, alpha, gamma, run_jobs):
    client = api(alpha)
    run_jobs(lambda: plant(client, "AlphaMark"))
    other = api(gamma)
    run_jobs(lambda: plant(other, "GammaMark"))
    return client


def test_the_archive_holds_every_table_control_rows_and_files(seeded, alpha):
    manifest, data = export_now(alpha)
    assert set(manifest["tables"]) == set(catalog.tables("shard_main", alpha.schema_name))
    assert manifest["tables"]["content_document"]["rows"] == 6 and manifest["tables"]["audit_entry"]["rows"] > 5
    assert ["content", "0001_initial"] in manifest["migrations"]
    assert {"memberships", "api_keys", "plan_changes", "flags", "invitations"} <= set(manifest["control"])
    assert len(manifest["files"]) == 1
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert names[0] == "manifest.json"
        import hashlib

        for entry in [*manifest["tables"].values(), *manifest["control"].values(), *manifest["files"].values()]:
            assert hashlib.sha256(tar.extractfile(entry["file"]).read()).hexdigest() == entry["sha256"]
        keys = [json.loads(line) for line in tar.extractfile("control/api_keys.jsonl")]
        members = [json.loads(line) for line in tar.extractfile("control/memberships.jsonl")]
    assert any(k["name"] == "key AlphaMark" for k in keys)
    assert all(set(k) == {"name", "prefix", "scopes", "created_by", "created_at", "last_used_at", "revoked_at"}
               for k in keys)
    assert {m["email"] for m in members} >= {"owner@alpha.test", seeded.principal.email}
    # Nothing secret, nothing of the other tenant.
    from apps.accounts.models import ApiKey, Invitation

    for secret in [*ApiKey.objects.filter(tenant=alpha).values_list("key_hash", flat=True),
                   *Invitation.objects.filter(tenant=alpha).values_list("token_hash", flat=True)]:
        assert secret.encode() not in data
    assert b"AlphaMark" in data and b"GammaMark" not in data


def _comparable(manifest: dict) -> dict:
    """The manifest without the tenant's own identity and the parts that name it."""
    identity_tables = {"outbox_message", "reports_exportrequest"}
    return {
        "migrations": manifest["migrations"],
        "tables": {t: e for t, e in manifest["tables"].items() if t not in identity_tables},
        "control": {n: e for n, e in manifest["control"].items() if n not in {"tenant", "domains", "api_keys"}},
        "files": manifest["files"],
        "identity_rows": {t: manifest["tables"][t]["rows"] for t in identity_tables},
    }


def test_round_trip_export_import_export_gives_the_same_manifest(seeded, alpha, tmp_path):
    from django.core.files.storage import default_storage

    from apps.content.models import Document
    from apps.tenancy.activation import tenant_activated

    first, data = export_now(alpha)
    path = tmp_path / "alpha.tar"
    path.write_bytes(data)
    copy = import_archive(path, slug="alpha-copy", shard="b")
    assert copy.shard.name == "b" and copy.schema_name == "t_alpha_copy"
    second, _ = export_now(copy)
    assert _comparable(second) == _comparable(first)
    with tenant_activated(copy):
        assert Document.objects.filter(title="AlphaMark title").exists()
        # New rows continue after the imported ids.
        assert Document.objects.create(title="after").pk > max(Document.objects.exclude(title="after")
                                                                 .values_list("pk", flat=True))
    assert default_storage.listdir("exports/alpha-copy")[1]


def test_an_interrupted_export_goes_on_from_its_last_table(seeded, alpha, monkeypatch):
    from apps.lifecycle import archive

    clean, _ = export_now(alpha)
    export = services.export_request(tenant=alpha, requested_by_id=None, enqueue=False)
    stop_after = 3

    def killed(export_, name):
        if len(export_.tables) > stop_after:
            raise SystemExit("worker killed")

    monkeypatch.setattr(exporting, "after_part", killed)
    with pytest.raises(SystemExit):
        exporting.export_run(export.pk)
    export.refresh_from_db()
    assert export.status == "running" and len(export.tables) == stop_after + 1
    dumped = []
    real_dump = archive.dump_table
    monkeypatch.setattr(archive, "dump_table", lambda a, s, t, p, tick=None: dumped.append(t) or real_dump(a, s, t, p, tick))
    monkeypatch.setattr(exporting, "after_part", lambda export_, name: None)
    done = exporting.export_run(export.pk)
    assert done.status == "done" and done.attempts == 2
    skipped = {n.removeprefix("tables/").removesuffix(".jsonl") for n in export.tables if n.startswith("tables/")}
    assert skipped and not skipped & set(dumped)
    assert {name for name, meta in done.tables.items() if meta.get("attempt") == 1} == set(export.tables) - {
        exporting.MIGRATIONS_KEY}
    resumed = exporting.read_manifest(default_storage_path(done.file_name))
    assert _comparable(resumed) == _comparable(clean)


def default_storage_path(name):
    from django.core.files.storage import default_storage

    return default_storage.path(name)


def test_an_older_archive_is_loaded_at_its_state_then_migrated_forward(seeded, alpha, tmp_path):
    """An archive from before reports' 0002 (no attempts/heartbeat columns)."""
    import hashlib

    from apps.reports.models import ExportRequest
    from apps.tenancy.activation import tenant_activated

    manifest, data = export_now(alpha)
    old = tmp_path / "old.tar"
    with tarfile.open(fileobj=io.BytesIO(data)) as source, tarfile.open(old, "w") as target:
        for member in source.getmembers():
            content = source.extractfile(member).read()
            if member.name == "tables/reports_exportrequest.jsonl":
                rows = [json.loads(line) for line in content.splitlines()]
                content = b"".join(json.dumps({k: v for k, v in r.items() if k not in ("attempts", "heartbeat_at")})
                                   .encode() + b"\n" for r in rows)
                entry = manifest["tables"]["reports_exportrequest"]
                entry.update(sha256=hashlib.sha256(content).hexdigest(), bytes=len(content))
            if member.name == "manifest.json":
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(content)
            target.addfile(info, io.BytesIO(content))
        manifest["migrations"].remove(["reports", "0002_attempts_heartbeat"])
        blob = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(blob)
        target.addfile(info, io.BytesIO(blob))
    copy = import_archive(old, slug="alpha-old", shard="main")
    with tenant_activated(copy):
        exports = list(ExportRequest.objects.all())
        assert len(exports) == 1 and exports[0].attempts == 0 and exports[0].status == "done"
    from apps.tenancy import schemas

    assert ("reports", "0002_attempts_heartbeat") in schemas.applied_migrations_by_schema(
        "shard_main", ["t_alpha_old"])["t_alpha_old"]


def test_a_damaged_archive_is_refused_and_leaves_nothing(seeded, alpha, tmp_path):
    from django.core.exceptions import ValidationError

    from apps.tenancy import schemas
    from apps.tenancy.models import Tenant

    manifest, data = export_now(alpha)
    bad = tmp_path / "bad.tar"
    with tarfile.open(fileobj=io.BytesIO(data)) as source, tarfile.open(bad, "w") as target:
        for member in source.getmembers():
            content = source.extractfile(member).read()
            if member.name == "tables/content_document.jsonl":
                content = content.replace(b"AlphaMark title", b"AlphaMark tit1e")
            info = tarfile.TarInfo(member.name)
            info.size = len(content)
            target.addfile(info, io.BytesIO(content))
    with pytest.raises(ValidationError, match="does not match the manifest"):
        import_archive(bad, slug="alpha-bad", shard="main")
    assert not Tenant.objects.filter(slug="alpha-bad").exists()
    assert not schemas.schema_exists("shard_main", "t_alpha_bad")
