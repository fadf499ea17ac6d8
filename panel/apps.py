from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class PanelConfig(AppConfig):
    name = "panel"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from panel import socket_access  # noqa: F401 - its logout receiver
        from panel.hypervisor import connection
        from panel.identity import sessions  # noqa: F401 - its login and logout receivers

        connection.connect_timeout = lambda: float(settings.PANEL_CONNECT_TIMEOUT)
        connection.pki_dir = lambda: Path(settings.PANEL_PKI_DIR)
        connection.ssh_dir = lambda: Path(settings.PANEL_SSH_DIR)
