import signal

from django.core.management.base import BaseCommand

from monitoring.collector import Collector


class Command(BaseCommand):
    help = "Collect host and VM usage every interval, store it and push it to open pages."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--interval", type=int, default=None, help="Seconds between collections (default 5)."
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        collector = Collector(options["interval"])
        signal.signal(signal.SIGTERM, lambda *_: collector.stop())
        self.stdout.write(f"Collecting stats every {collector.step} s.")
        try:
            collector.run()
        except KeyboardInterrupt:
            pass
