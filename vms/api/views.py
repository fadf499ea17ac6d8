"""The vms/ endpoints: list and read from the database, act through the services."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from panel.actors import Actor
from panel.api.pagination import KeyFirstPagination
from panel.api.views import REAUTH_PARAMETER, ScopedMixin, named_in_body
from panel.exceptions import ServiceError
from panel.identity.reauth import require_recent_auth
from panel.models import Job
from panel.permissions import (
    ALLOCATE,
    CONFIG_CPU_MEMORY,
    CONFIG_DISKS,
    CONSOLE,
    MIGRATE,
    POWER,
    is_admin,
)
from storage.api.serializers import DiskAttachSerializer, DiskDetachSerializer, MediaSerializer
from vms import services
from vms.models import VirtualMachine
from vms.search import VMSearchFilter, VMTagFilter
from vms.services.tags import set_vm_tags

from .serializers import ActionSerializer, VirtualMachineDetailSerializer, VirtualMachineSerializer

JOB_QUEUED = inline_serializer("VMJobQueued", {"job": serializers.IntegerField()})


VM_DISK_LIST = inline_serializer(
    "VMDisk",
    {
        "target": serializers.CharField(),
        "device": serializers.CharField(),
        "bus": serializers.CharField(),
        "source": serializers.CharField(allow_null=True),
        "format": serializers.CharField(),
        "cache": serializers.CharField(),
    },
    many=True,
)


class VirtualMachineViewSet(
    ScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = VirtualMachineSerializer
    filterset_fields = ["host", "project", "state"]
    filter_backends = [DjangoFilterBackend, VMSearchFilter, VMTagFilter, OrderingFilter]
    pagination_class = KeyFirstPagination
    search_fields = ["name", "=id"]  # what the schema tells; vms.search does the work
    ordering_fields = ["name", "state", "vcpus", "memory_mib", "host__name"]
    ordering = ["name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def base_queryset(self) -> QuerySet:
        qs = VirtualMachine.objects.select_related("host", "project", "owner")
        # The list never shows the domain XML nor the details read from the host.
        return qs.defer("xml", "details") if self.action == "list" else qs

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return (
            VirtualMachineDetailSerializer
            if self.action == "retrieve"
            else VirtualMachineSerializer
        )

    @extend_schema(
        request=inline_serializer(
            "VMCreate",
            {
                "name": serializers.CharField(),
                "project": serializers.IntegerField(),
                "host": serializers.IntegerField(
                    required=False,
                    help_text="Without it, placement (PANEL_PLACEMENT: spread or pack) picks "
                    "among the hosts that are up, not in maintenance, hold the pools, volumes "
                    "and networks the request names and have the memory; a refusal says why "
                    "each host was left out.",
                ),
                "template": serializers.IntegerField(required=False),
                "affinity_group": serializers.IntegerField(
                    required=False,
                    help_text="An affinity group of the project (affinity-groups/): the VM "
                    "joins it, and placement keeps the group's rule (apart or together).",
                ),
                "vcpus": serializers.IntegerField(required=False),
                "memory_mib": serializers.IntegerField(required=False),
                "os_variant": serializers.CharField(required=False),
                "firmware": serializers.ChoiceField(["bios", "uefi"], required=False),
                "disks": serializers.ListField(child=serializers.DictField(), required=False),
                "networks": serializers.ListField(
                    child=serializers.IntegerField(),
                    required=False,
                    help_text="Network ids. A non-admin's NICs on networks whose guests share a "
                    "bridge get libvirt's clean-traffic filter (no MAC, IP or ARP spoofing).",
                ),
                "install": serializers.DictField(
                    required=False,
                    help_text='{"method": ...} and its fields. For "url", "location" is an '
                    "http(s) install tree under PANEL_INSTALL_MIRRORS, or a host whose every "
                    "address is public (resolved now and again when fetched, each redirect "
                    'too); anything else is refused (400 on location). For "iso" and '
                    '"cloud-image", "library_image" names an image of the library '
                    "(library-images/) the project may use, instead of iso_volume or "
                    "image_volume; another project's private image is refused (400 on "
                    "library_image) as if it did not exist.",
                ),
                "start": serializers.BooleanField(required=False),
            },
        ),
        responses={
            202: inline_serializer(
                "VMCreateQueued", {"id": serializers.CharField(), "job": serializers.IntegerField()}
            )
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a VM (see the install methods in the API guide); the job does the work.

        Boot media (kernel, initrd, ISO, cloud image, imported disk) are volumes the VM may
        use: for non-admins, a volume of the project they may change or a shared image an
        admin published; other paths on the host are for admins. Cloud-init user-data,
        meta-data, network-config and kickstarts reach the job's task only: they never
        appear in the job (jobs/, ws/jobs/), its log or the audit log."""
        from vms.services import create

        if not isinstance(request.data, dict):
            raise ServiceError("Send the VM as a JSON object.")
        job = create.create_vm(
            create.CreateRequest.parse(dict(request.data)), actor=Actor.of(request)
        )
        return Response({"id": job.result["vm"], "job": job.pk}, status=status.HTTP_202_ACCEPTED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        vm = self.get_object_for(CONFIG_CPU_MEMORY)
        if "project" in request.data and not is_admin(request.user):
            raise PermissionDenied("Only administrators can move VMs between projects.")
        serializer = self.get_serializer(vm, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "project" in data and data["project"] != vm.project:
            vm = services.assign_vm(vm, data["project"], actor=Actor.of(request))
        if "autostart" in data and data["autostart"] != vm.autostart:
            vm = services.set_vm_autostart(vm, data["autostart"], actor=Actor.of(request))
        if "tags" in data and data["tags"] != vm.tags:
            vm = set_vm_tags(vm, data["tags"], actor=Actor.of(request))
        return Response(self.get_serializer(vm).data)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not kwargs.get("partial"):
            return Response({"detail": "Use PATCH to change a VM."}, status=405)
        return super().update(request, *args, **kwargs)

    @extend_schema(
        parameters=[OpenApiParameter("remove_storage", bool), REAUTH_PARAMETER],
        responses={202: JOB_QUEUED, 204: None},
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        vm = self.get_object_for(ALLOCATE)
        remove = request.query_params.get("remove_storage", "").lower() in {"1", "true", "yes"}
        if remove:
            require_recent_auth(request)
        targets = [d["target"] for d in vm.disks if d.get("device") == "disk"] if remove else []
        job = services.delete_vm(vm, actor=Actor.of(request), remove_disks=targets)
        if job is None:
            return Response(status=204)
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)

    def _act(self, request: Request, verb: str) -> Response:
        vm = self.get_object_for(POWER)
        params = ActionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        result = services.perform_action(
            vm,
            verb,
            actor=Actor.of(request),
            mode=params.validated_data["mode"],
            timeout=params.validated_data["timeout"],
        )
        if isinstance(result, Job):
            return Response({"job": result.pk}, status=status.HTTP_202_ACCEPTED)
        return Response(VirtualMachineSerializer(result).data)

    @extend_schema(
        request=ActionSerializer, responses={200: VirtualMachineSerializer, 202: JOB_QUEUED}
    )
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "start")

    @extend_schema(request=ActionSerializer, responses={202: JOB_QUEUED})
    @action(detail=True, methods=["post"])
    def shutdown(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "shutdown")

    @extend_schema(request=None, responses={200: VirtualMachineSerializer})
    @action(detail=True, methods=["post"], url_path="force-off")
    def force_off(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "force-off")

    @extend_schema(request=ActionSerializer, responses={200: VirtualMachineSerializer})
    @action(detail=True, methods=["post"])
    def reboot(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "reboot")

    @extend_schema(request=None, responses={200: VirtualMachineSerializer})
    @action(detail=True, methods=["post"])
    def reset(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "reset")

    @extend_schema(request=None, responses={200: VirtualMachineSerializer})
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "suspend")

    @extend_schema(request=None, responses={200: VirtualMachineSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "resume")

    @extend_schema(request=None, responses={202: JOB_QUEUED})
    @action(detail=True, methods=["post"])
    def save(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "save")

    @extend_schema(request=None, responses={202: JOB_QUEUED})
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "restore")

    @extend_schema(
        request=inline_serializer(
            "VMMigrate",
            {
                "target_host": serializers.IntegerField(),
                "live": serializers.BooleanField(required=False),
                "copy_storage": serializers.CharField(
                    required=False,
                    help_text='false (shared storage), true or "all", or "incremental"',
                ),
                "target_pool": serializers.IntegerField(required=False),
                "persistent": serializers.BooleanField(required=False),
                "undefine_source": serializers.BooleanField(required=False),
                "auto_converge": serializers.BooleanField(required=False),
                "post_copy": serializers.BooleanField(required=False),
                "bandwidth_mib": serializers.IntegerField(required=False),
                "tls": serializers.BooleanField(
                    required=False,
                    help_text="send memory and disks over TLS (QEMU's, with each host's "
                    "certificates in /etc/pki/qemu)",
                ),
            },
        ),
        responses={202: JOB_QUEUED},
    )
    @action(detail=True, methods=["post"])
    def migrate(self, request: Request, pk: str | None = None) -> Response:
        """Migrate the VM to another host after a pre-check; cancel with POST jobs/{id}/cancel/."""
        from vms.services import migrate

        if not isinstance(request.data, dict):
            raise ServiceError("Send the migration options as a JSON object.")
        data = request.data.dict() if hasattr(request.data, "dict") else dict(request.data)
        vm = self.get_object_for(MIGRATE)  # 404 or 403 before the body is read
        job = migrate.migrate_vm(vm, migrate.MigrationAsk.parse(data), actor=Actor.of(request))
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=inline_serializer(
            "VMMoveStorage",
            {"disk": serializers.CharField(), "pool": serializers.IntegerField()},
        ),
        responses={202: JOB_QUEUED},
    )
    @action(detail=True, methods=["post"], url_path="move-storage")
    def move_storage(self, request: Request, pk: str | None = None) -> Response:
        """Move one disk to another pool of the VM's host, as a job (running VMs too)."""
        from vms.services import move_storage

        if not isinstance(request.data, dict):
            raise ServiceError("Send the disk and the pool as a JSON object.")
        data = request.data.dict() if hasattr(request.data, "dict") else dict(request.data)
        vm = self.get_object_for(MIGRATE)  # 404 or 403 before the body is read
        ask = move_storage.MoveAsk.parse(data)
        job = move_storage.move_storage(vm, ask, actor=Actor.of(request))
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=inline_serializer(
            "ConsoleRequest", {"type": serializers.ChoiceField(["serial", "vnc"])}
        ),
        responses=inline_serializer(
            "ConsoleTicket",
            {
                "url": serializers.CharField(
                    help_text="The websocket to open within expires_in seconds, once."
                ),
                "ticket": serializers.CharField(),
                "expires_in": serializers.IntegerField(),
                "view_only": serializers.BooleanField(
                    required=False,
                    help_text="True for viewers: nothing they type or point reaches the VM.",
                ),
                "password": serializers.CharField(
                    required=False,
                    help_text="The display's VNC password, for a full VNC session only.",
                ),
            },
        ),
    )
    @action(detail=True, methods=["post"])
    def console(self, request: Request, pk: str | None = None) -> Response:
        """A single-use ticket to open the serial or VNC console (view-only for viewers).

        Viewers watch: their serial session never takes the console from anyone and gets a
        read-only copy of the output; their VNC session goes through the panel's own proxy
        (RFB 3.8, no authentication: the panel answers a display's password itself and
        passes on no keys, pointer or clipboard). A VNC console of a VM on another host than
        the panel's is refused (409): its display listens on that host only. Open consoles
        close within seconds of a logout, a disabled account or a lost role."""
        from vms import consoles

        vm = self.get_object_for(CONSOLE)  # 404 or 403 before the body is read
        scheme = "wss" if request.is_secure() else "ws"
        ticket = consoles.issue_ticket(
            vm,
            Actor.of(request),
            str(request.data.get("type", "")),
            ws_base=f"{scheme}://{request.get_host()}",
        )
        return Response(ticket)

    @extend_schema(request=None, responses={200: VirtualMachineDetailSerializer})
    @action(detail=True, methods=["post"], url_path="refresh-details")
    def refresh_details(self, request: Request, pk: str | None = None) -> Response:
        """Read addresses, agent info and block sizes from the host now."""
        vm = self.get_object()
        if vm.state == "missing":
            raise ServiceError(f"{vm.name} is missing from its host.")
        vm = services.refresh_details(vm)
        return Response(VirtualMachineDetailSerializer(vm).data)

    def _disk_volume(self, request: Request, pk: Any) -> Any:
        from storage.models import Volume

        return named_in_body(Volume, request.user, pk, "volume")

    @extend_schema(methods=["GET"], responses=VM_DISK_LIST)
    @extend_schema(
        methods=["POST"],
        request=DiskAttachSerializer,
        responses={201: VirtualMachineDetailSerializer},
    )
    @extend_schema(
        methods=["DELETE"], request=DiskDetachSerializer, responses=VirtualMachineDetailSerializer
    )
    @action(detail=True, methods=["get", "post", "delete"], pagination_class=None)
    def disks(self, request: Request, pk: str | None = None) -> Response:
        """The VM's disks; POST attaches, DELETE detaches (target in the body or ?target=)."""
        from vms.services import disks

        if request.method == "GET":
            return Response(self.get_object().disks)
        vm = self.get_object_for(CONFIG_DISKS)
        if request.method == "DELETE":
            params = DiskDetachSerializer(data={**request.query_params.dict(), **request.data})
            params.is_valid(raise_exception=True)
            vm = disks.detach_disk(vm, actor=Actor.of(request), **params.validated_data)
            return Response(VirtualMachineDetailSerializer(vm).data)
        params = DiskAttachSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        volume = self._disk_volume(request, data.pop("volume"))
        vm = disks.attach_disk(vm, volume=volume, actor=Actor.of(request), **data)
        return Response(VirtualMachineDetailSerializer(vm).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MediaSerializer, responses=VirtualMachineDetailSerializer)
    @action(detail=True, methods=["post"], url_path="disks/media")
    def media(self, request: Request, pk: str | None = None) -> Response:
        """Insert an image into a CD-ROM drive, or eject it (volume null)."""
        from vms.services import disks

        vm = self.get_object_for(CONFIG_DISKS)
        params = MediaSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        volume = self._disk_volume(request, data.pop("volume"))
        vm = disks.change_media(
            vm,
            data.pop("target"),
            volume,
            actor=Actor.of(request),
            **data,
        )
        return Response(VirtualMachineDetailSerializer(vm).data)
