from django.db import migrations, models


class Migration(migrations.Migration):
    """Support access requests are recorded as action "access" (choices only: no SQL)."""

    dependencies = [("audit", "0002_default_partition")]

    operations = [
        migrations.AlterField(
            model_name="auditentry",
            name="action",
            field=models.CharField(
                choices=[("create", "Create"), ("update", "Update"), ("delete", "Delete"), ("access", "Access")],
                max_length=20,
            ),
        ),
    ]
