"""On PostgreSQL, a trigram index serves the VM search (a name containing the text, in
any case, as Django's icontains asks for it: UPPER(name) LIKE UPPER('%text%')). Without
it every search reads the whole table. The pg_trgm extension is trusted, so the owner
of the database may create it; where it cannot be created the search still works,
without the index, and the migration says so."""

import logging

from django.db import migrations

log = logging.getLogger(__name__)

INDEX = "vms_vm_name_upper_trgm"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        try:
            cursor.execute("SAVEPOINT vms_trgm")
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {INDEX} ON vms_virtualmachine "
                "USING gin ((UPPER(name::text)) gin_trgm_ops)"
            )
            cursor.execute("RELEASE SAVEPOINT vms_trgm")
        except Exception as exc:  # noqa: BLE001 - the index is an aid, not a must
            cursor.execute("ROLLBACK TO SAVEPOINT vms_trgm")
            log.warning("VM search runs without its trigram index: %s", exc)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("vms", "0009_vm_reach_and_template")]

    operations = [migrations.RunPython(create, drop)]
