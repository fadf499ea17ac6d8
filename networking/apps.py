from django.apps import AppConfig


class NetworkingConfig(AppConfig):
    name = "networking"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Plug networking into the core: a host's networks (panel.registry)."""
        from panel import registry

        from . import services

        registry.add_inventory_step(
            registry.InventoryStep(
                "networks",
                lambda host, inventory: services.sync_networks(host, inventory.networks),
            )
        )
