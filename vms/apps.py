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
        from .services import alerts, backups, clones, common, migrate, move_storage
        from .services.create import job

        registry.add_inventory_step(
            registry.InventoryStep(
                "domains", lambda host, inventory: services.sync_domains(host, inventory.domains)
            )
        )
        registry.set_domain_events(
            registry.DomainEvents(
                changed=services.sync_domain,
                gone=services.mark_missing,
                stopped=alerts.domain_stopped,
            )
        )
        registry.add_quota_usage(project_usage)
        registry.add_undo(["vm.create"], job.undo_abandoned)
        registry.add_undo(["vm.migrate"], migrate.undo_abandoned)
        registry.add_undo(["vm.move_storage"], move_storage.undo_abandoned)
        registry.add_undo(["vm.backup", "vm.backup.restore"], backups.undo_abandoned)
        registry.add_undo(["vm.clone"], clones.undo_abandoned_clone)
        registry.add_undo(
            ["vm.shutdown", "vm.save", "vm.restore", "vm.delete"]
            + ["vm.snapshot.create", "vm.snapshot.revert", "vm.snapshot.delete"]
            + ["vm.snapshot.merge", "vm.ha_restart"],
            common.undo_abandoned,
        )
