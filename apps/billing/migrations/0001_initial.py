import django.db.models.deletion
from django.db import migrations, models

PLANS = [
    # code, name, rank, documents, events/month, seats, api keys, requests/minute
    ("free", "Free", 1, 1_000, 100_000, 5, 3, 120),
    ("pro", "Pro", 2, 100_000, 10_000_000, 50, 20, 1_200),
    ("enterprise", "Enterprise", 3, 10_000_000, 1_000_000_000, 10_000, 500, 12_000),
]


def create_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for code, name, rank, documents, events, seats, keys, rpm in PLANS:
        Plan.objects.update_or_create(code=code, defaults=dict(
            name=name, rank=rank, max_documents=documents, max_events_per_month=events, max_seats=seats,
            max_api_keys=keys, rate_limit_per_minute=rpm))


class Migration(migrations.Migration):
    initial = True
    dependencies = [("tenancy", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Plan",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("code", models.SlugField(max_length=30, unique=True)),
                ("name", models.CharField(max_length=100)),
                ("rank", models.PositiveSmallIntegerField(unique=True)),
                ("max_documents", models.PositiveIntegerField()),
                ("max_events_per_month", models.PositiveIntegerField()),
                ("max_seats", models.PositiveIntegerField()),
                ("max_api_keys", models.PositiveIntegerField()),
                ("rate_limit_per_minute", models.PositiveIntegerField()),
            ],
            options={"ordering": ["rank"]},
        ),
        migrations.CreateModel(
            name="Subscription",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("started_at", models.DateTimeField(auto_now_add=True)),
                ("changed_at", models.DateTimeField(auto_now=True)),
                ("plan", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="subscriptions", to="billing.plan")),
                ("tenant", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="subscription", to="tenancy.tenant")),
            ],
        ),
        migrations.RunPython(create_plans, migrations.RunPython.noop),
    ]
