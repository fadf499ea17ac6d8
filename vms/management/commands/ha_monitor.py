import signal

from django.core.management.base import BaseCommand

from vms.services.ha_monitor import Monitor


class Command(BaseCommand):
    help = (
        "Renew the HA agents' leases on the fenced hosts and restart the HA VMs of a host "
        "that is lost on other hosts (a second one stands by while the first runs)."
    )

    def handle(self, *args, **options):
        monitor = Monitor()
        signal.signal(signal.SIGTERM, lambda *_: monitor.stop())
        self.stdout.write("Watching the fenced hosts for HA.")
        try:
            monitor.run()
        except KeyboardInterrupt:
            monitor.stop()
            monitor.step_down()
