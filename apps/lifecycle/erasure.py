"""Erasing an offboarded tenant for good, once its grace period is over.

Every step can run again: an attempt that fails part-way is retried by the
next beat run and finds less to do. The control-plane rows go last but one,
since the earlier steps read from them (hostnames, key ids, members); Redis
is swept once more at the very end, because deleting the registry row
raises the hostname versions again after the control plane commits.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil

from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django_tenants.utils import quote_schema_name as q

from apps.accounts.models import ApiKey, Membership, User
from apps.jobs.models import OutboxMessage
from apps.tenancy import planes, schemas
from apps.tenancy.models import Domain, Move, Tenant

from . import people, planes_control, redis_keys
from .exporting import tenant_work_dir
from .models import Offboarding

logger = logging.getLogger(__name__)

# An erasure that died half-way (its process killed) is taken up again by the
# next run; beat runs one at a time, hourly.
CLAIMABLE = [Offboarding.Status.SCHEDULED, Offboarding.Status.FAILED, Offboarding.Status.ERASING]

# Control-plane tables with a tenant reference whose rows stay: the erasure
# record itself (what, when, who asked).
RETAINED_TABLES = {Offboarding._meta.db_table}


pseudonym = people.pseudonym


def _identity(offboarding: Offboarding) -> redis_keys.Identity:
    n = offboarding.tenant_id
    users = _users_to_erase(n)
    return redis_keys.Identity(
        tenant_id=n,
        hostnames=list(Domain.objects.filter(tenant_id=n).values_list("domain", flat=True)),
        api_key_ids=list(ApiKey.objects.filter(tenant_id=n).values_list("pk", flat=True)),
        user_ids=[u.pk for u in users], user_emails=[u.email for u in users])


def _users_to_erase(tenant_id: int) -> list[User]:
    """Members of this tenant who belong to no other and are not operators."""
    members = Membership.objects.filter(tenant_id=tenant_id).values_list("user_id", flat=True)
    return list(User.objects.filter(pk__in=members, is_staff=False, is_superuser=False)
                .annotate(others=Count("memberships", filter=~Q(memberships__tenant_id=tenant_id)))
                .filter(others=0))


def _erase_files(offboarding: Offboarding, *, by_slug: bool = True) -> int:
    """The tenant's export files, archives and export work directories.
    ``by_slug``: also the files kept under its slug, which only holds while
    the registry still gives the slug to this tenant (a later tenant may take it)."""
    roots = [f"tenant-exports/{offboarding.tenant_id}"]
    if by_slug:
        roots.append(f"exports/{offboarding.tenant_slug}")
    removed = 0
    for root in roots:
        try:
            _, names = default_storage.listdir(root)
        except FileNotFoundError:
            continue
        for name in names:
            default_storage.delete(f"{root}/{name}")
            removed += 1
    shutil.rmtree(tenant_work_dir(offboarding.tenant_id), ignore_errors=True)
    return removed


def _erase_schemas(offboarding: Offboarding) -> list[str]:
    """The schema on every shard (leftover move copies too); replicas follow
    by streaming replication. Never a schema the registry gives another tenant."""
    dropped = []
    others = set(Tenant.objects.exclude(pk=offboarding.tenant_id).values_list("schema_name", "shard__alias"))
    for alias in planes.shard_aliases():
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
                           [offboarding.schema_name, offboarding.schema_name.replace("_", r"\_") + r"\_moved\_%"])
            names = [row[0] for row in cursor.fetchall()]
        for name in names:
            if (name, alias) in others:
                continue
            schemas.drop_schema(alias, name)
            dropped.append(f"{alias}:{name}")
    return dropped


def _erase_users(users: list[User], offboarding: Offboarding) -> dict:
    if offboarding.requested_by_id in {u.pk for u in users}:
        Offboarding.objects.filter(pk=offboarding.pk).update(requested_by=pseudonym(offboarding.requested_by_id))
    return people.erase_people(users, skip_schema=offboarding.schema_name)


def _erase_control_rows(tenant_id: int) -> dict:
    """The registry row (Django's cascade takes what hangs off it), then
    every other control-plane row that names the tenant by a tenant_id
    column or in a control outbox message's headers."""
    counts: dict[str, int] = {}
    with transaction.atomic(using="default"):
        _, by_model = Tenant.objects.filter(pk=tenant_id).delete()
        counts.update({label: n for label, n in by_model.items() if n})
        with connections["default"].cursor() as cursor:
            for table, column in planes_control.catalog_references():
                if table in RETAINED_TABLES:
                    continue
                cursor.execute(f"DELETE FROM {q(table)} WHERE {q(column)} = %s", [tenant_id])
                if cursor.rowcount:
                    counts[table] = counts.get(table, 0) + cursor.rowcount
        outbox = OutboxMessage.objects.filter(headers__tenant_id=tenant_id).delete()[0]
        if outbox:
            counts[OutboxMessage._meta.db_table] = outbox
    return counts


def erase(offboarding: Offboarding) -> Offboarding:
    """Erase the tenant of ``offboarding`` everywhere; the row records what."""
    if Move.objects.filter(tenant_id=offboarding.tenant_id, finished_at__isnull=True).exists():
        # Its copy on the target is the mover's until the move is settled.
        raise RuntimeError("a move of this tenant is unfinished; settle it (resume or abort) first")
    who = _identity(offboarding)
    users = list(User.objects.filter(pk__in=who.user_ids))
    summary = {"redis": redis_keys.erase_keys(who), "files": _erase_files(offboarding),
               "schemas": _erase_schemas(offboarding)}
    summary.update(_erase_users(users, offboarding))
    summary["control_rows"] = _erase_control_rows(offboarding.tenant_id)
    late = redis_keys.erase_keys(who)
    summary["redis"] = {k: summary["redis"][k] + late[k] for k in late}
    Offboarding.objects.filter(pk=offboarding.pk).update(
        status=Offboarding.Status.ERASED, erased_at=timezone.now(), erased=summary, error="")
    logger.info("tenant erased", extra={"tenant_id": offboarding.tenant_id, "offboarding": offboarding.pk})
    offboarding.refresh_from_db()
    return offboarding


def _claim(offboarding_id: int) -> Offboarding | None:
    with transaction.atomic(using="default"):
        offboarding = (Offboarding.objects.select_for_update(skip_locked=True)
                       .filter(pk=offboarding_id, status__in=CLAIMABLE, erase_after__lte=timezone.now()).first())
        if offboarding is not None:
            offboarding.status = Offboarding.Status.ERASING
            offboarding.attempts += 1
            offboarding.save(update_fields=["status", "attempts"])
        return offboarding


def erase_claimed(offboarding_id: int) -> Offboarding | None:
    """Erase one due offboarding if no other run holds it; a failure is recorded for the next run."""
    offboarding = _claim(offboarding_id)
    if offboarding is None:
        return None
    try:
        return erase(offboarding)
    except Exception as exc:
        logger.exception("tenant erasure failed", extra={"offboarding": offboarding_id})
        Offboarding.objects.filter(pk=offboarding_id).update(status=Offboarding.Status.FAILED,
                                                             error=f"{type(exc).__name__}: {exc}"[:2000])
        return None


def sweep_late_rows() -> int:
    """Control-plane rows that name a tenant erased in the last day: records
    of its tasks that were still on their way (a job record flushed, a
    dead letter of a task that ran late) arrive after the erasure."""
    late = 0
    since = timezone.now() - dt.timedelta(days=1)
    for record in Offboarding.objects.filter(status=Offboarding.Status.ERASED, erased_at__gte=since):
        _erase_files(record, by_slug=False)
        counts = _erase_control_rows(record.tenant_id)
        if counts:
            late += sum(counts.values())
            Offboarding.objects.filter(pk=record.pk).update(erased={**record.erased, "late_rows": counts})
    return late


def erase_due_tenants() -> list[Offboarding]:
    """Erase each offboarding whose grace period is over (beat, hourly)."""
    due = Offboarding.objects.filter(status__in=CLAIMABLE, erase_after__lte=timezone.now()).values_list("pk", flat=True)
    done = [done for done in (erase_claimed(pk) for pk in list(due)) if done is not None]
    sweep_late_rows()
    return done
