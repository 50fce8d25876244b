# A migration of its own: PostgreSQL refuses to ALTER a table with pending
# (deferred foreign key) trigger events from the data copy in 0002.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0002_plan_from_billing")]

    operations = [
        migrations.RemoveField("tenant", "plan_code"),
        migrations.AddConstraint(
            model_name="tenant",
            constraint=models.CheckConstraint(condition=models.Q(plan__isnull=False) | models.Q(schema_name="public"),
                                              name="tenancy_tenant_has_plan"),
        ),
    ]
