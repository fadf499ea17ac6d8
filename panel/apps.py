from django.apps import AppConfig


class PanelConfig(AppConfig):
    name = "panel"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from panel import socket_access  # noqa: F401 - its logout receiver
        from panel.hypervisor import connection

        connection.connect_timeout = lambda: float(settings.PANEL_CONNECT_TIMEOUT)
