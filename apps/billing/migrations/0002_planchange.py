import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def subscriptions_to_history(apps, schema_editor):
    Subscription = apps.get_model("billing", "Subscription")
    PlanChange = apps.get_model("billing", "PlanChange")
    PlanChange.objects.bulk_create(
        PlanChange(tenant_id=s.tenant_id, from_plan=None, to_plan_id=s.plan_id, changed_at=s.changed_at,
                   source="subscription")
        for s in Subscription.objects.all()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_initial"),
        ("tenancy", "0002_plan_from_billing"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="PlanChange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("source", models.CharField(blank=True, default="", max_length=40)),
                ("changed_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                 related_name="+", to=settings.AUTH_USER_MODEL)),
                ("from_plan", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                                related_name="+", to="billing.plan")),
                ("tenant", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                             related_name="plan_changes", to="tenancy.tenant")),
                ("to_plan", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                              to="billing.plan")),
            ],
            options={"ordering": ["-changed_at", "-id"]},
        ),
        migrations.RunPython(subscriptions_to_history, migrations.RunPython.noop),
    ]
