from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="exportrequest",
            name="attempts",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="exportrequest",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
