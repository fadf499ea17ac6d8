"""Run the directory sync now, instead of waiting for beat's next pass."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from panel.identity import ldap as directory_ldap


class Command(BaseCommand):
    help = "Re-read every LDAP user now: groups, and whether the directory still has them."

    def handle(self, *args: Any, **options: Any) -> None:
        if not directory_ldap.enabled():
            raise CommandError("No directory is configured: set PANEL_LDAP_URI (README).")
        counts = directory_ldap.sync_directory()
        if not counts:
            self.stdout.write("Nobody was synced: no directory user yet, or the directory")
            self.stdout.write("could not be reached (the log says which).")
            return
        for outcome, count in sorted(counts.items()):
            self.stdout.write(f"{outcome}: {count}")
