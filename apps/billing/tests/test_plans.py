"""A tenant's plan has one home (``Tenant.plan``) and one way to change
(``subscription_change_plan``); quotas, the rate limiter, flags and the usage
API all follow it, for that tenant only."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.billing.models import Plan, PlanChange
from apps.billing.selectors import plan_of
from apps.billing.services import quota_enforce, subscription_change_plan
from apps.flags.models import Flag
from apps.flags.selectors import flag_enabled
from apps.http.errors import QuotaExceeded
from apps.ratelimit.selectors import tenant_rate_limit
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import tenant_for_hostname

pytestmark = pytest.mark.django_db

FREE, PRO = "free", "pro"


def host(tenant) -> str:
    return f"{tenant.slug}.localhost"


def seen(tenant) -> dict:
    """What a request to the tenant's host sees of its plan (through the host lookup's cache)."""
    current = tenant_for_hostname(host(tenant))
    free = Plan.objects.get(code=FREE)
    try:
        quota_enforce(tenant=current, quota="documents", used=free.max_documents, adding=1)
        over_free_quota = "allowed"
    except QuotaExceeded:
        over_free_quota = "refused"
    return {"plan": plan_of(current).code, "rate": tenant_rate_limit(current),
            "flag": flag_enabled("pro-feature", tenant=current), "over_free_quota": over_free_quota}


def operator_client(django_user_model) -> Client:
    django_user_model.objects.create_superuser(email="ops@platform.test", password="ops-pass")
    ops = Client(HTTP_HOST="localhost")
    assert ops.post("/admin/login/?next=/admin/", {"username": "ops@platform.test", "password": "ops-pass"}
                    ).status_code == 302
    return ops


def change_form_data(response) -> dict:
    """The POST a browser would send back for an admin change page, unchanged."""
    def value(v):
        return "on" if v is True else getattr(v, "pk", v)

    def fields(form, prefix: str = "") -> dict:
        values = {name: form[name].value() for name in form.fields}
        return {f"{prefix}{name}": value(v) for name, v in values.items() if v not in (None, False)}

    data = fields(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
        for sub in formset.forms:
            data.update(fields(sub, f"{sub.prefix}-"))
    return data


@pytest.fixture
def pro_flag():
    return Flag.objects.create(key="pro-feature", enabled=True, plans=[PRO])


def test_changing_the_plan_in_the_operator_admin_changes_what_quotas_flags_and_the_rate_limiter_see(
        alpha, beta, api, pro_flag, django_user_model, django_capture_on_commit_callbacks):
    free, pro = Plan.objects.get(code=FREE), Plan.objects.get(code=PRO)
    usage = api(alpha, role="owner")
    before = {"plan": FREE, "rate": (FREE, free.rate_limit_per_minute), "flag": False, "over_free_quota": "refused"}
    assert seen(alpha) == seen(beta) == before  # and now cached: host lookup, plan, flags
    assert usage.get("usage").json()["plan"] == FREE  # cached usage summary

    ops = operator_client(django_user_model)
    page = ops.get(f"/admin/tenancy/tenant/{alpha.pk}/change/")
    assert page.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(f"/admin/tenancy/tenant/{alpha.pk}/change/", {**change_form_data(page), "plan": pro.pk})
    assert response.status_code == 302, response.content[:1000]

    assert seen(alpha) == {"plan": PRO, "rate": (PRO, pro.rate_limit_per_minute), "flag": True,
                           "over_free_quota": "allowed"}
    assert usage.get("usage").json()["plan"] == PRO
    assert seen(beta) == before  # another tenant's plan is untouched
    change = PlanChange.objects.get(tenant_id=alpha.pk)
    assert (change.from_plan, change.to_plan, change.changed_by.email, change.source) == (
        free, pro, "ops@platform.test", "admin")
    assert PlanChange.objects.filter(tenant_id=beta.pk).count() == 0
    history = ops.get(f"/admin/tenancy/tenant/{alpha.pk}/change/")
    assert b"plan history" in history.content.lower() and b"ops@platform.test" in history.content


def test_the_operator_admin_lists_and_filters_tenants_by_plan(alpha, django_user_model):
    ops = operator_client(django_user_model)
    listing = ops.get(f"/admin/tenancy/tenant/?plan__id__exact={Plan.objects.get(code=FREE).pk}")
    assert listing.status_code == 200 and b"alpha" in listing.content
    assert b"alpha" not in ops.get(f"/admin/tenancy/tenant/?plan__id__exact={Plan.objects.get(code=PRO).pk}").content


def test_the_command_changes_the_plan_through_the_same_service(alpha, beta):
    out = StringIO()
    call_command("set_tenant_plan", "alpha", "enterprise", stdout=out)
    assert "alpha: plan free -> enterprise" in out.getvalue()
    assert Tenant.objects.get(pk=alpha.pk).plan.code == "enterprise"
    assert Tenant.objects.get(pk=beta.pk).plan.code == FREE
    assert PlanChange.objects.get(tenant_id=alpha.pk).source == "command"
    with pytest.raises(CommandError, match="Unknown plan 'gold'. Choose one of free, pro, enterprise"):
        call_command("set_tenant_plan", "alpha", "gold", stdout=StringIO())
    with pytest.raises(CommandError, match="No tenant"):
        call_command("set_tenant_plan", "nobody", "pro", stdout=StringIO())


def test_cache_refreshes_run_after_the_control_plane_commit_not_the_shards(alpha, django_capture_on_commit_callbacks):
    """Inside a shard transaction (a task, a request writing tenant data), the
    refresh must still follow the control-plane commit, which holds the change."""
    tenant = Tenant.objects.get(pk=alpha.pk)
    shard = alpha.shard.alias
    with (django_capture_on_commit_callbacks(using=shard) as on_shard,
          django_capture_on_commit_callbacks(using="default") as on_control_plane):
        with tenant_activated(tenant), transaction.atomic(using=shard):
            subscription_change_plan(tenant=tenant, plan_code=PRO)
    assert on_control_plane and not on_shard


def test_reading_the_plan_on_the_request_path_costs_no_sql(alpha, pro_flag):
    tenant_for_hostname(host(alpha))
    seen(alpha)  # warm
    with (CaptureQueriesContext(connections["default"]) as control,
          CaptureQueriesContext(connections[alpha.shard.alias]) as shard):
        tenant = tenant_for_hostname(host(alpha))
        tenant_rate_limit(tenant)
        flag_enabled("pro-feature", tenant=tenant)
        plan_of(tenant)
    assert control.captured_queries == [] and shard.captured_queries == []


def test_a_plan_edit_applies_at_once_to_every_tenant_on_it(alpha, django_capture_on_commit_callbacks):
    assert tenant_rate_limit(tenant_for_hostname(host(alpha)))[1] == Plan.objects.get(code=FREE).rate_limit_per_minute
    free = Plan.objects.get(code=FREE)
    free.rate_limit_per_minute = 7
    with django_capture_on_commit_callbacks(execute=True):
        free.save()
    assert tenant_rate_limit(tenant_for_hostname(host(alpha))) == (FREE, 7)


def test_unknown_plans_and_the_platform_tenant_are_refused(alpha):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Unknown plan"):
        subscription_change_plan(tenant=Tenant.objects.get(pk=alpha.pk), plan_code="gold")
    with pytest.raises(ValidationError, match="no plan"):
        subscription_change_plan(tenant=Tenant.objects.get(schema_name="public"), plan_code=PRO)


def test_provisioning_sets_the_plan_and_refuses_unknown_ones(tenants):
    from django.core.exceptions import ValidationError

    from apps.tenancy.services import tenant_create

    assert {t.plan.code for t in Tenant.objects.exclude(schema_name="public")} == {FREE}  # the default
    with pytest.raises(ValidationError, match="Unknown plan 'gold'"):
        tenant_create(slug="goldie", name="Goldie", admin_email="o@goldie.test", plan="gold")
    assert not Tenant.objects.filter(slug="goldie").exists()


def test_the_migration_carries_every_tenants_plan_over(alpha, beta, gamma):
    """From the two copies (a code on the tenant, a billing Subscription) to
    one: the Subscription wins where there is one, as quotas enforced it."""
    from django.db.migrations.executor import MigrationExecutor

    connection = connections["default"]
    with connection.cursor() as cursor:
        # One test transaction holds every migration: no deferred checks left
        # pending for the ALTERs, and never wait on a lock for long.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET LOCAL lock_timeout = '10s'")
    MigrationExecutor(connection).migrate([("tenancy", "0001_initial"), ("billing", "0001_initial")])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tenancy_tenant SET plan = 'free' WHERE id = %s", [alpha.pk])
        cursor.execute("INSERT INTO billing_subscription (tenant_id, plan_id, started_at, changed_at) "
                       "SELECT %s, id, now(), now() FROM billing_plan WHERE code = 'pro'", [alpha.pk])
        cursor.execute("UPDATE tenancy_tenant SET plan = 'enterprise' WHERE id = %s", [beta.pk])
        cursor.execute("UPDATE tenancy_tenant SET plan = 'gold' WHERE id = %s", [gamma.pk])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    plans = dict(Tenant.objects.exclude(schema_name="public").values_list("slug", "plan__code"))
    assert (plans["alpha"], plans["beta"], plans["gamma"]) == ("pro", "enterprise", FREE)
    assert Tenant.objects.get(schema_name="public").plan is None
    history = PlanChange.objects.get(tenant_id=alpha.pk)
    assert (history.from_plan, history.to_plan.code, history.source) == (None, "pro", "subscription")
