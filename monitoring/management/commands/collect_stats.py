import signal

from django.core.management.base import BaseCommand

from monitoring.collector import Collector
from panel.choices import ProcessRole
from panel.leases import LeaseKeeper


class Command(BaseCommand):
    help = (
        "Collect the usage of the hosts this process holds a lease on (all of them when it "
        "runs alone) every interval, store it and push it to open pages."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval", type=int, default=None, help="Seconds between collections (default 5)."
        )

    def handle(self, *args, **options):
        keeper = LeaseKeeper(ProcessRole.COLLECTOR)
        collector = Collector(options["interval"], keeper=keeper)
        signal.signal(signal.SIGTERM, lambda *_: collector.stop())
        self.stdout.write(f"Collecting stats every {collector.step} s as {keeper.name}.")
        try:
            collector.run()
        except KeyboardInterrupt:
            pass
