"""A migration that must be refused: each operation takes a long lock on a
table that already holds rows (content.Document, made in content.0001)."""

from django.contrib.postgres.functions import RandomUUID
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("content", "0001_initial")]

    operations = [
        migrations.AddField("document", "token", models.UUIDField(null=True, db_default=RandomUUID())),
        migrations.AddIndex("document", models.Index(fields=["title"], name="content_doc_title_idx")),
        migrations.AddConstraint("document", models.CheckConstraint(condition=models.Q(version__gte=0),
                                                                    name="content_doc_version_ok")),
        migrations.AddField("document", "owner", models.ForeignKey("tenancy.Tenant", null=True,
                                                                   on_delete=models.SET_NULL)),
        migrations.AlterField("document", "version", models.BigIntegerField(default=1)),
        migrations.AlterField("document", "author_id", models.BigIntegerField(db_index=True)),
        migrations.RunSQL("ALTER TABLE content_document ADD COLUMN seen_at timestamptz DEFAULT clock_timestamp()"),
        migrations.RunSQL("CREATE INDEX content_doc_seen ON content_document (seen_at)"),
        migrations.RunSQL("ALTER TABLE content_document ADD CONSTRAINT seen_fk FOREIGN KEY (seen_id) "
                          "REFERENCES other (id)"),
        migrations.RunSQL("ALTER TABLE content_document ALTER COLUMN body TYPE varchar(100)"),
        migrations.RunSQL("ALTER TABLE content_document ALTER COLUMN body SET NOT NULL"),
    ]
