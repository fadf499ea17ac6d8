import signal

from django.core.management.base import BaseCommand

from panel.watcher import HostWatcher


class Command(BaseCommand):
    help = "Follow every host's domain events and keep the inventory in step."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        watcher = HostWatcher()
        signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
        self.stdout.write("Watching hosts for domain events.")
        try:
            watcher.run()
        except KeyboardInterrupt:
            pass
