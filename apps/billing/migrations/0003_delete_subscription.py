# The plan lives on the tenant now (tenancy 0002 carried it over); the
# subscriptions survive as history rows (0002).
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_planchange"), ("tenancy", "0003_remove_plan_code")]

    operations = [migrations.DeleteModel(name="Subscription")]
