import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0003_remove_plan_code"),
    ]

    operations = [
        # A bare flag could strand a tenant frozen forever; the lease replaces
        # it. A tenant frozen at deploy time is open again (its mover, if any,
        # renews the lease on its next heartbeat).
        migrations.RemoveField(model_name="tenant", name="writes_frozen"),
        migrations.AddField(
            model_name="tenant",
            name="writes_frozen_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="Move",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("schema_name", models.CharField(max_length=63)),
                ("retired_schema", models.CharField(max_length=63)),
                ("phase", models.CharField(
                    choices=[("prepare", "Prepare"), ("copy", "Copy"), ("verify", "Verify"), ("flip", "Flip"),
                             ("retire", "Retire"), ("done", "Done"), ("rolled_back", "Rolled back")],
                    default="prepare", max_length=20)),
                ("rows_copied", models.BigIntegerField(default=0)),
                ("bytes_copied", models.BigIntegerField(default=0)),
                ("freeze_seconds", models.FloatField(blank=True, null=True)),
                ("error", models.TextField(blank=True)),
                ("mover", models.CharField(blank=True, max_length=200)),
                ("started_at", models.DateTimeField(auto_now_add=True)),
                ("heartbeat_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("source", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="moves_out",
                                             to="tenancy.shard")),
                ("target", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="moves_in",
                                             to="tenancy.shard")),
                ("tenant", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="moves",
                                             to="tenancy.tenant")),
            ],
            options={"ordering": ["-started_at"]},
        ),
        migrations.AddConstraint(
            model_name="move",
            constraint=models.UniqueConstraint(condition=models.Q(("finished_at__isnull", True)), fields=("tenant",),
                                               name="tenancy_move_one_open_per_tenant"),
        ),
    ]
