"""A VM's tags: a JSON list of short labels on its row. On PostgreSQL a GIN index
(jsonb_path_ops) serves the list's tag filter (tags @> '["web"]'); SQLite reads its
table, which stays fast at the sizes SQLite serves (vms.search.with_tag)."""

from django.db import migrations, models

INDEX = "vms_vm_tags_gin"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON vms_virtualmachine "
            "USING gin (tags jsonb_path_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("vms", "0010_vm_name_trigram_index")]

    operations = [
        migrations.AddField(
            model_name="virtualmachine",
            name="tags",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Labels users give it (panel metadata, sorted; see vms.services.tags).",
            ),
        ),
        migrations.RunPython(create, drop),
    ]
