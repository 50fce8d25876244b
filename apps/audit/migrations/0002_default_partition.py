from django.db import migrations

from apps.partitions.partitions import create_default_partition


class Migration(migrations.Migration):
    """A DEFAULT partition for schemas made before new schemas got one, so an
    insert never fails for a month without a partition."""

    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunPython(create_default_partition("audit_entry"), migrations.RunPython.noop),
    ]
