from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from monitoring.api import FleetStatsView, HostStatsView, VMStatsView
from networking.api.views import NetworkViewSet
from storage.api.library import LibraryImageViewSet
from storage.api.views import PoolViewSet, VolumeViewSet
from vms.api import ha, placement, tuning
from vms.api.backups import (
    ProjectSchedulesView,
    ScheduleView,
    VMBackupRestoreView,
    VMBackupsView,
    VMBackupVerifyView,
    VMBackupView,
    VMSchedulesView,
)
from vms.api.nics import VMNicsView, VMNicView
from vms.api.snapshots import (
    VMDiskMergeView,
    VMSnapshotRevertView,
    VMSnapshotsView,
    VMSnapshotView,
)
from vms.api.views import VirtualMachineViewSet

from . import access, views
from .directory import DirectoryMappingViewSet
from .notifications import NotificationViewSet, SubscriptionViewSet
from .sessions import SessionViewSet
from .tokens import ApiTokenViewSet

router = DefaultRouter()
# No ".json" twins of every route: the API speaks JSON only, and the @action views
# (members, start, ...) take no format argument, so the twins answered 500.
router.include_format_suffixes = False
router.register("users", views.UserViewSet, basename="user")
router.register("projects", views.ProjectViewSet, basename="project")
router.register("hosts", views.HostViewSet, basename="host")
router.register("vms", VirtualMachineViewSet, basename="vm")
router.register("pools", PoolViewSet, basename="pool")
router.register("volumes", VolumeViewSet, basename="volume")
router.register("library-images", LibraryImageViewSet, basename="libraryimage")
router.register("jobs", views.JobViewSet, basename="job")
router.register("networks", NetworkViewSet, basename="network")
router.register("audit-events", views.AuditEventViewSet, basename="auditevent")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
router.register("notifications", NotificationViewSet, basename="notification")
router.register("tokens", ApiTokenViewSet, basename="apitoken")
router.register("affinity-groups", placement.AffinityGroupViewSet, basename="affinitygroup")
router.register("directory-mappings", DirectoryMappingViewSet, basename="directorymapping")
router.register("sessions", SessionViewSet, basename="session")

urlpatterns = [
    path("auth/token/", views.obtain_token, name="api_token"),
    path("roles/", access.RolesView.as_view(), name="api_roles"),
    path("roles/<int:role_id>/", access.RoleView.as_view(), name="api_role"),
    path("groups/", access.GroupsView.as_view(), name="api_groups"),
    path("groups/<int:group_id>/", access.GroupView.as_view(), name="api_group"),
    path("projects/<int:project_id>/grants/", access.GrantsView.as_view(), name="api_grants"),
    path(
        "projects/<int:project_id>/grants/<int:grant_id>/",
        access.GrantView.as_view(),
        name="api_grant",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # Swagger UI's settings as a script file: the site's policy admits no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
    path("vms/<uuid:vm_id>/nics/", VMNicsView.as_view(), name="vm_nics"),
    path("vms/<uuid:vm_id>/nics/<str:mac>/", VMNicView.as_view(), name="vm_nic"),
    path("vms/<uuid:vm_id>/snapshots/", VMSnapshotsView.as_view(), name="vm_snapshots"),
    path("vms/<uuid:vm_id>/snapshots/<str:name>/", VMSnapshotView.as_view(), name="vm_snapshot"),
    path(
        "vms/<uuid:vm_id>/snapshots/<str:name>/revert/",
        VMSnapshotRevertView.as_view(),
        name="api_vm_snapshot_revert",
    ),
    path(
        "vms/<uuid:vm_id>/disks/<str:disk>/merge/", VMDiskMergeView.as_view(), name="vm_disk_merge"
    ),
    path("vms/<uuid:vm_id>/backups/", VMBackupsView.as_view(), name="vm_backups"),
    path("vms/<uuid:vm_id>/backups/<int:backup_id>/", VMBackupView.as_view(), name="vm_backup"),
    path(
        "vms/<uuid:vm_id>/backups/<int:backup_id>/restore/",
        VMBackupRestoreView.as_view(),
        name="api_vm_backup_restore",
    ),
    path(
        "vms/<uuid:vm_id>/backups/<int:backup_id>/verify/",
        VMBackupVerifyView.as_view(),
        name="api_vm_backup_verify",
    ),
    path(
        "vms/<uuid:vm_id>/backup-schedules/", VMSchedulesView.as_view(), name="vm_backup_schedules"
    ),
    path(
        "projects/<int:project_id>/backup-schedules/",
        ProjectSchedulesView.as_view(),
        name="project_backup_schedules",
    ),
    path("backup-schedules/<int:schedule_id>/", ScheduleView.as_view(), name="backup_schedule"),
    path("vms/<uuid:vm_id>/stats/", VMStatsView.as_view(), name="vm_stats"),
    path("hosts/<int:host_id>/stats/", HostStatsView.as_view(), name="host_stats"),
    path("stats/fleet/", FleetStatsView.as_view(), name="fleet_stats"),
    *tuning.urlpatterns,
    *placement.urlpatterns,
    *ha.urlpatterns,
    path("", include(router.urls)),
]
