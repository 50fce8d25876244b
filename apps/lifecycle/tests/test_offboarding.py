"""The grace period, undo, what blocks an erasure, and rows that arrive late."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.jobs.models import DeadLetter
from apps.lifecycle import erasure, services
from apps.lifecycle.models import Offboarding
from apps.lifecycle.tasks import erase_due
from apps.tenancy import schemas
from apps.tenancy.models import Move, Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TENANT_EXPORT_WORK_DIR = str(tmp_path / "work")


def offboard(tenant, **kwargs) -> Offboarding:
    return services.offboard_request(tenant=tenant, requested_as="operator", requested_by="op@platform.test",
                                     reason="contract ended", **kwargs)


def test_nothing_is_erased_within_the_grace_period_and_undo_brings_it_back(alpha, gamma, settings):
    settings.TENANT_OFFBOARDING_GRACE_DAYS = 30
    record = offboard(gamma)
    assert Tenant.objects.get(pk=gamma.pk).status == "suspended"
    with pytest.raises(ValidationError, match="already being deleted"):
        offboard(gamma)
    assert record.erase_after - timezone.now() > dt.timedelta(days=29)
    assert erase_due.apply().get() == 0
    assert schemas.schema_exists("shard_main", gamma.schema_name)
    services.offboard_undo(tenant=gamma, cancelled_by="op@platform.test")
    assert Tenant.objects.get(pk=gamma.pk).status == "active"
    with pytest.raises(ValidationError, match="not being deleted"):
        services.offboard_undo(tenant=gamma, cancelled_by="op@platform.test")
    with pytest.raises(ValidationError, match="reason"):
        services.offboard_request(tenant=alpha, requested_as="operator", reason=" ")


def test_the_beat_task_erases_what_is_due_then_sweeps_rows_that_came_late(alpha, gamma):
    record = offboard(gamma)
    Offboarding.objects.filter(pk=record.pk).update(erase_after=timezone.now() - dt.timedelta(seconds=1))
    assert erase_due.apply().get() == 1
    assert not Tenant.objects.filter(pk=gamma.pk).exists()
    assert not schemas.schema_exists("shard_main", gamma.schema_name)
    assert schemas.schema_exists("shard_main", alpha.schema_name) and Tenant.objects.filter(pk=alpha.pk).exists()
    now = timezone.now()
    DeadLetter.objects.create(task_name="late", task_id="late-1", tenant_id=gamma.pk, tenant_slug="gamma", args=[],
                              exception="x", first_failed_at=now, last_failed_at=now)
    erase_due.apply()
    assert not DeadLetter.objects.filter(tenant_id=gamma.pk).exists()
    assert Offboarding.objects.get(pk=record.pk).erased["late_rows"] == {"jobs_deadletter": 1}


def test_an_unfinished_move_holds_the_erasure_back(alpha, beta):
    record = offboard(alpha, now=True)
    Move.objects.create(tenant=alpha, source=alpha.shard, target=beta.shard, schema_name=alpha.schema_name,
                        retired_schema=f"{alpha.schema_name}_moved_1")
    assert erasure.erase_claimed(record.pk) is None
    failed = Offboarding.objects.get(pk=record.pk)
    assert failed.status == "failed" and "move" in failed.error
    assert schemas.schema_exists("shard_main", alpha.schema_name)
