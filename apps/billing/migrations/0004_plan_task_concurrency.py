from django.db import migrations, models

# Per plan: a free tenant runs one task at a time per queue, pro two,
# enterprise four (a queue's worker group runs 1-2 per process, several pods).
LIMITS = {"free": 1, "pro": 2, "enterprise": 4}


def set_limits(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for code, limit in LIMITS.items():
        Plan.objects.filter(code=code).update(task_concurrency=limit)


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_delete_subscription")]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="task_concurrency",
            field=models.PositiveSmallIntegerField(
                default=2, help_text="Tasks of one tenant running at once per queue (0: no limit)."),
        ),
        migrations.RunPython(set_limits, migrations.RunPython.noop),
    ]
