from django.urls import path

from . import (
    backup_views,
    disk_views,
    migration_views,
    nic_views,
    snapshot_views,
    tree,
    views,
    wizard,
)

urlpatterns = [
    path("", views.vm_list, name="vm_list"),
    path("bulk/", views.vm_bulk, name="vm_bulk"),
    path("new/", wizard.vm_create, name="vm_create"),
    path("new/from-template/", wizard.vm_create_from_template, name="vm_create_from_template"),
    path("templates/", wizard.template_list, name="template_list"),
    path("templates/<int:template_id>/delete/", wizard.template_delete, name="template_delete"),
    path("tree/hosts/<int:host_id>/", tree.host_tree, name="host_tree"),
    path("<uuid:vm_id>/", views.vm_detail, name="vm_detail"),
    path("<uuid:vm_id>/autostart/", views.vm_autostart, name="vm_autostart"),
    path("<uuid:vm_id>/tags/", views.vm_tags, name="vm_tags"),
    path("<uuid:vm_id>/assign/", views.vm_assign, name="vm_assign"),
    path("<uuid:vm_id>/delete/", views.vm_delete, name="vm_delete"),
    path("<uuid:vm_id>/xml/", views.vm_xml, name="vm_xml"),
    path("<uuid:vm_id>/clone/", views.vm_clone, name="vm_clone"),
    path("<uuid:vm_id>/vnc-password/", views.vm_vnc_password, name="vm_vnc_password"),
    path("<uuid:vm_id>/disks/attach/", disk_views.vm_disk_attach, name="vm_disk_attach"),
    path("<uuid:vm_id>/disks/detach/", disk_views.vm_disk_detach, name="vm_disk_detach"),
    path("<uuid:vm_id>/disks/media/", disk_views.vm_disk_media, name="vm_disk_media"),
    path(
        "<uuid:vm_id>/snapshots/create/",
        snapshot_views.vm_snapshot_create,
        name="vm_snapshot_create",
    ),
    path(
        "<uuid:vm_id>/snapshots/revert/",
        snapshot_views.vm_snapshot_revert,
        name="vm_snapshot_revert",
    ),
    path(
        "<uuid:vm_id>/snapshots/delete/",
        snapshot_views.vm_snapshot_delete,
        name="vm_snapshot_delete",
    ),
    path(
        "<uuid:vm_id>/snapshots/merge/", snapshot_views.vm_snapshot_merge, name="vm_snapshot_merge"
    ),
    path("<uuid:vm_id>/backups/create/", backup_views.vm_backup_create, name="vm_backup_create"),
    path("<uuid:vm_id>/backups/restore/", backup_views.vm_backup_restore, name="vm_backup_restore"),
    path("<uuid:vm_id>/backups/delete/", backup_views.vm_backup_delete, name="vm_backup_delete"),
    path("<uuid:vm_id>/backups/verify/", backup_views.vm_backup_verify, name="vm_backup_verify"),
    path(
        "<uuid:vm_id>/backups/schedule-add/",
        backup_views.vm_backup_schedule_add,
        name="vm_backup_schedule_add",
    ),
    path(
        "<uuid:vm_id>/backups/schedule-delete/",
        backup_views.vm_backup_schedule_delete,
        name="vm_backup_schedule_delete",
    ),
    path("<uuid:vm_id>/nics/attach/", nic_views.vm_nic_attach, name="vm_nic_attach"),
    path("<uuid:vm_id>/nics/detach/", nic_views.vm_nic_detach, name="vm_nic_detach"),
    path("<uuid:vm_id>/nics/link/", nic_views.vm_nic_link, name="vm_nic_link"),
    path("<uuid:vm_id>/console/<slug:kind>/", views.vm_console, name="vm_console"),
    path("<uuid:vm_id>/migrate/", migration_views.vm_migrate, name="vm_migrate"),
    path("<uuid:vm_id>/move-storage/", migration_views.vm_move_storage, name="vm_move_storage"),
    path("<uuid:vm_id>/<slug:action>/", views.vm_action, name="vm_action"),
]
