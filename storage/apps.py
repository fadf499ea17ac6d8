from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "storage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Plug storage into the core: a host's pools and volumes (and the clean-up of
        what failed jobs left on it), and what volumes count against quotas."""
        from panel import registry

        from . import services
        from .quotas import project_usage

        registry.add_inventory_step(
            registry.InventoryStep(
                "pools",
                lambda host, inventory: services.sync_pools(
                    host, inventory.pools, inventory.volumes
                ),
                clean=services.remove_leftovers,
            )
        )
        registry.add_quota_usage(project_usage)
        registry.add_undo(
            ["volume.create", "volume.clone", "volume.convert", "volume.upload", "volume.wipe"],
            services.undo_abandoned,
        )
        registry.add_undo(["library.fetch"], services.undo_abandoned_fetch)
