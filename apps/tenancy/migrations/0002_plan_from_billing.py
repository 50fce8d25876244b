"""The tenant's plan becomes a relation to billing's Plan, its one home.

Before, the plan was stored twice: a code on the tenant (read by flags, edited
in the tenant admin) and a billing Subscription (read by quotas and the rate
limiter). Where both exist the Subscription wins: it is what quotas and rate
limits enforced. Tenants without one keep their code; an unknown code gets the
lowest-ranked plan.
"""

import django.db.models.deletion
from django.db import migrations, models


def carry_plans_over(apps, schema_editor):
    Tenant = apps.get_model("tenancy", "Tenant")
    Plan = apps.get_model("billing", "Plan")
    Subscription = apps.get_model("billing", "Subscription")
    by_code = {plan.code: plan.pk for plan in Plan.objects.all()}
    cheapest = Plan.objects.order_by("rank").values_list("pk", flat=True).first()
    subscribed = dict(Subscription.objects.values_list("tenant_id", "plan_id"))
    for tenant in Tenant.objects.exclude(schema_name="public"):
        tenant.plan_id = subscribed.get(tenant.pk) or by_code.get(tenant.plan_code) or cheapest
        tenant.save(update_fields=["plan"])


def carry_plans_back(apps, schema_editor):
    Tenant = apps.get_model("tenancy", "Tenant")
    for tenant in Tenant.objects.exclude(plan=None).select_related("plan"):
        tenant.plan_code = tenant.plan.code
        tenant.save(update_fields=["plan_code"])


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0001_initial"), ("billing", "0001_initial")]

    operations = [
        migrations.RenameField("tenant", "plan", "plan_code"),
        migrations.AddField(
            model_name="tenant",
            name="plan",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="tenants", to="billing.plan"),
        ),
        migrations.RunPython(carry_plans_over, carry_plans_back),
    ]
