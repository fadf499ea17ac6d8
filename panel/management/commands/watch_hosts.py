import signal

from django.core.management.base import BaseCommand

from panel.choices import ProcessRole
from panel.leases import LeaseKeeper
from panel.watcher import HostWatcher


class Command(BaseCommand):
    help = (
        "Follow the domain events of the hosts this process holds a lease on (all of them "
        "when it runs alone) and keep the inventory in step."
    )

    def handle(self, *args, **options):
        keeper = LeaseKeeper(ProcessRole.WATCHER)
        watcher = HostWatcher(keeper=keeper)
        signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
        self.stdout.write(f"Watching hosts for domain events as {keeper.name}.")
        try:
            watcher.run()
        except KeyboardInterrupt:
            pass
