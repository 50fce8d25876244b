"""A tenant from an export archive, on any shard, at the current schema version.

The schema is created at the migration state the archive recorded, the rows
are loaded into it (each part checked against the manifest's row count and
SHA-256), and only then is it migrated forward: an export made before a
migration loads into the tables it was taken from, and the migration
carries the rows on as it does for every other tenant. All of it happens in
one transaction on the shard, with the registry rows committed inside it,
as provisioning does (apps/tenancy/services.py): a failure leaves neither a
schema nor a tenant.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterator

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from apps.accounts import tokens
from apps.accounts.models import Invitation, Membership, User
from apps.accounts.services import user_ensure
from apps.billing.models import Plan, PlanChange
from apps.flags.models import Flag
from apps.tenancy import schemas
from apps.tenancy.models import Domain, Tenant, schema_name_for_slug, validate_slug
from apps.tenancy.services import default_hostname, shard_choose

from . import archive, catalog

Report = Callable[[str], None]


class ArchiveError(ValidationError):
    pass


def _member(tar: tarfile.TarFile, name: str):
    try:
        return tar.extractfile(name)
    except KeyError as exc:
        raise ArchiveError(f"The archive has no {name}.") from exc


def _json_lines(tar: tarfile.TarFile, name: str) -> Iterator[dict]:
    for line in _member(tar, name):
        if line.strip():
            yield json.loads(line)


def _leaves(graph, applied: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Per app, the last of its recorded migrations: the targets that
    recreate the recorded state."""
    by_app: dict[str, list[tuple[str, str]]] = {}
    for node in applied:
        by_app.setdefault(node[0], []).append(node)
    return [max(nodes, key=lambda n: len(graph.forwards_plan(n))) for nodes in by_app.values()]


def migrate_to(alias: str, schema: str, recorded: list[list[str]]) -> None:
    """Bring a new schema to the recorded migration state, no further."""
    connection = connections[alias]
    previous = connection.tenant
    connection.set_schema(schema, include_public=False)
    MigrationRecorder(connection).ensure_schema()
    connection.set_schema(schema)
    try:
        executor = MigrationExecutor(connection)
        applied = {tuple(node) for node in recorded}
        unknown = sorted(applied - set(executor.loader.graph.nodes))
        if unknown:
            raise ArchiveError(f"The archive was made by a newer version: migrations unknown here: {unknown[:5]}.")
        targets = _leaves(executor.loader.graph, applied)
        executor.migrate(targets, plan=executor.migration_plan(targets))
    finally:
        connection.set_tenant(previous)


def _make_partitions(alias: str, schema: str, table: str, partitions: list[list[str]]) -> None:
    with connections[alias].cursor() as cursor:
        for name, bound in partitions:
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {q(schema)}.{q(name)} PARTITION OF {q(schema)}.{q(table)} "
                           f"{bound}")


def load_tables(tar: tarfile.TarFile, alias: str, schema: str, manifest: dict, report: Report) -> int:
    present = set(catalog.tables(alias, schema))
    rows = 0
    for table, entry in sorted(manifest["tables"].items()):
        if table not in present:
            raise ArchiveError(f"Table {table} of the archive is not in a schema at its recorded migration state.")
        _make_partitions(alias, schema, table, entry.get("partitions") or [])
        read = archive.load_table(alias, schema, table, _member(tar, entry["file"]))
        if (read.rows, read.sha256) != (entry["rows"], entry["sha256"]):
            raise ArchiveError(f"{entry['file']} does not match the manifest (rows {read.rows} of {entry['rows']}, "
                               "or its checksum): the archive is damaged.")
        archive.sync_sequences(alias, schema, table)
        rows += read.rows
        report(f"  {table}: {read.rows} rows")
    return rows


# Tenant data that holds the tenant's own identity, rewritten for the new
# one: task messages name their tenant in their headers (and are not sent
# again: they were the old tenant's), and export files live under the slug.
def _rewrite_identity(alias: str, schema: str, tenant: Tenant, old_root: str, new_root: str) -> None:
    present = set(catalog.tables(alias, schema))
    with connections[alias].cursor() as cursor:
        if "outbox_message" in present:
            cursor.execute(
                f"UPDATE {q(schema)}.outbox_message SET headers = headers || jsonb_build_object("
                "'tenant_id', %s::bigint, 'tenant_slug', %s::text) WHERE headers ? 'tenant_id'", [tenant.pk, tenant.slug])
            cursor.execute(f"UPDATE {q(schema)}.outbox_message SET sent_at = now(), "
                           "last_error = 'not sent: imported from an export' WHERE sent_at IS NULL")
        if "reports_exportrequest" in present:
            cursor.execute(f"UPDATE {q(schema)}.reports_exportrequest SET file_name = %s || "
                           "substr(file_name, length(%s) + 1) WHERE file_name LIKE %s",
                           [new_root + "/", old_root + "/", old_root.replace("_", r"\_") + "/%"])


def _user(email: str | None) -> User | None:
    return User.objects.filter(email=email).first() if email else None


def _import_memberships(tar, manifest, tenant: Tenant) -> int:
    count = 0
    for row in _json_lines(tar, manifest["control"]["memberships"]["file"]):
        user = _user(row["email"]) or user_ensure(email=row["email"]).user
        membership = Membership.objects.create(user=user, tenant=tenant, role=row["role"])
        Membership.objects.filter(pk=membership.pk).update(created_at=row["created_at"])
        count += 1
    return count


def _import_invitations(tar, manifest, tenant: Tenant) -> int:
    """Back with a new token each (tokens never travel): the invitee is invited again."""
    count = 0
    for row in _json_lines(tar, manifest["control"]["invitations"]["file"]):
        seed = tokens.new_invitation_seed()
        invitation = Invitation.objects.create(
            tenant=tenant, email=row["email"], role=row["role"], token_seed=seed,
            token_hash=tokens.hash_secret(tokens.invitation_token(seed)), invited_by=_user(row["invited_by"]),
            expires_at=row["expires_at"], accepted_at=row["accepted_at"])
        Invitation.objects.filter(pk=invitation.pk).update(created_at=row["created_at"])
        count += 1
    return count


def _import_plan_changes(tar, manifest, tenant: Tenant) -> int:
    plans = {p.code: p for p in Plan.objects.all()}
    count = 0
    for row in _json_lines(tar, manifest["control"]["plan_changes"]["file"]):
        if row["to_plan"] not in plans:
            raise ArchiveError(f"The archive names plan '{row['to_plan']}', which this platform does not have.")
        PlanChange.objects.create(tenant=tenant, from_plan=plans.get(row["from_plan"]), to_plan=plans[row["to_plan"]],
                                  changed_at=row["changed_at"], changed_by=_user(row["changed_by"]),
                                  source=row["source"])
        count += 1
    return count


def _import_flags(tar, manifest, tenant: Tenant) -> int:
    keys = [row["key"] for row in _json_lines(tar, manifest["control"]["flags"]["file"])]
    for flag in Flag.objects.filter(key__in=keys):
        flag.tenants.add(tenant)
    return len(keys)


def _register(tar, manifest: dict, *, slug: str, name: str | None, shard, report: Report) -> Tenant:
    """The registry rows and the tenant's control-plane rows (inside the shard's transaction)."""
    original = next(_json_lines(tar, manifest["control"]["tenant"]["file"]))
    plan = Plan.objects.filter(code=original["plan"]).first() or Plan.objects.order_by("rank").first()
    with transaction.atomic(using="default"):
        tenant = Tenant(slug=slug, name=name or original["name"], plan=plan, schema_name=schema_name_for_slug(slug),
                        shard=shard)
        tenant.save()
        Domain.objects.create(domain=default_hostname(slug), tenant=tenant, is_primary=True)
        counts = {"memberships": _import_memberships(tar, manifest, tenant),
                  "invitations": _import_invitations(tar, manifest, tenant),
                  "plan changes": _import_plan_changes(tar, manifest, tenant),
                  "flags": _import_flags(tar, manifest, tenant)}
        if not Membership.objects.filter(tenant=tenant, role=Membership.Role.OWNER).exists():
            raise ArchiveError("The archive names no owner of the tenant.")
    report("  " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return tenant


def _store_files(tar, manifest: dict, new_root: str) -> list[str]:
    stored = []
    for rel, entry in sorted(manifest["files"].items()):
        if archive.hash_stream(_member(tar, entry["file"])).sha256 != entry["sha256"]:
            raise ArchiveError(f"{entry['file']} does not match the manifest: the archive is damaged.")
        name = f"{new_root}/{rel.removeprefix('exports/')}"
        if default_storage.exists(name):
            default_storage.delete(name)
        stored.append(default_storage.save(name, File(_member(tar, entry["file"]), name=name)))
    return stored


def _check_new(slug: str, shard) -> str:
    try:
        validate_slug(slug)
    except ValidationError as exc:
        raise ValidationError({"slug": exc.messages[0]}) from exc
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"The slug '{slug}' is taken."})
    schema = schema_name_for_slug(slug)
    if schemas.schema_exists(shard.alias, schema):
        raise ValidationError({"slug": f"Schema '{schema}' already exists on shard '{shard.name}'."})
    return schema


def import_archive(path, *, slug: str, shard: str | None = None, name: str | None = None,
                   report: Report = lambda line: None) -> Tenant:
    """Create tenant ``slug`` from the archive at ``path``."""
    target = shard_choose(name=shard)
    schema = _check_new(slug, target)
    alias = target.alias
    stored: list[str] = []
    with tarfile.open(path, "r:") as tar:
        manifest = json.load(_member(tar, "manifest.json"))
        if manifest.get("format") != archive.FORMAT:
            raise ArchiveError(f"Not a tenant export (format {manifest.get('format')!r}).")
        registered = None
        try:
            with transaction.atomic(using=alias):
                schemas.create_schema(alias, schema)
                migrate_to(alias, schema, manifest["migrations"])
                report(f"schema {schema} on shard {target.name} at the archive's migration state")
                load_tables(tar, alias, schema, manifest, report)
                schemas.migrate_schema(alias, schema)
                registered = _register(tar, manifest, slug=slug, name=name, shard=target, report=report)
                new_root = f"exports/{slug}"
                _rewrite_identity(alias, schema, registered, manifest["tenant"]["files_root"], new_root)
                stored = _store_files(tar, manifest, new_root)
        except Exception:
            for name_ in stored:
                default_storage.delete(name_)
            if registered is not None and not transaction.get_connection("default").in_atomic_block:
                Tenant.objects.filter(pk=registered.pk).delete()
            raise
    report(f"imported {len(manifest['tables'])} tables and {len(stored)} files at {timezone.now():%Y-%m-%d %H:%M}")
    return registered
