from django.apps import AppConfig


class VmsConfig(AppConfig):
    name = "vms"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Plug the VMs into the core: a host's domains, the watcher's domain events and
        what VMs, backups and snapshots count against quotas (panel.registry)."""
        from panel import registry

        from . import services
        from .quotas import project_usage

        registry.add_inventory_step(
            registry.InventoryStep(
                "domains", lambda host, inventory: services.sync_domains(host, inventory.domains)
            )
        )
        registry.set_domain_events(
            registry.DomainEvents(changed=services.sync_domain, gone=services.mark_missing)
        )
        registry.add_quota_usage(project_usage)
