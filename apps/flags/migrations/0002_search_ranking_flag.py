from django.db import migrations


def create_flag(apps, schema_editor):
    Flag = apps.get_model("flags", "Flag")
    Flag.objects.get_or_create(key="search-ranking-v2", defaults={
        "description": "Cover-density ranking, normalised by document length (rolled out by percentage).",
        "enabled": True, "percentage": 0,
    })


class Migration(migrations.Migration):
    dependencies = [("flags", "0001_initial")]
    operations = [migrations.RunPython(create_flag, migrations.RunPython.noop)]
