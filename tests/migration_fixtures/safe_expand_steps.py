"""The expand-and-contract versions of the same changes: none is refused."""

from django.contrib.postgres.operations import AddConstraintNotValid, AddIndexConcurrently, ValidateConstraint
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction
    dependencies = [("content", "0001_initial")]

    operations = [
        migrations.AddField("document", "token", models.UUIDField(null=True)),
        migrations.AddField("document", "rank", models.IntegerField(default=0)),
        AddIndexConcurrently("document", models.Index(fields=["title"], name="content_doc_title_idx")),
        AddConstraintNotValid("document", models.CheckConstraint(condition=models.Q(version__gte=0),
                                                                 name="content_doc_version_ok")),
        ValidateConstraint("document", "content_doc_version_ok"),
        migrations.CreateModel("Note", [("id", models.BigAutoField(primary_key=True)),
                                        ("title", models.CharField(max_length=50, db_index=True))]),
        migrations.AddIndex("note", models.Index(fields=["title"], name="content_note_title_idx")),
        migrations.RunSQL("CREATE TABLE content_scratch (id bigint)"),
        migrations.RunSQL("CREATE INDEX content_scratch_id ON content_scratch (id)"),
        migrations.RunSQL("CREATE INDEX CONCURRENTLY content_doc_seen ON content_document (updated_at)"),
        migrations.RunSQL("ALTER TABLE content_document ADD CONSTRAINT seen_fk FOREIGN KEY (seen_id) "
                          "REFERENCES other (id) NOT VALID"),
        migrations.RunSQL("ALTER TABLE content_document VALIDATE CONSTRAINT seen_fk"),
    ]
