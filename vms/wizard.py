"""The create pages: the full wizard (admins and operators), the easy form from a template
(everyone with a project), and the admins' template list. Both forms parse the same request
the API takes (`create.CreateRequest.parse()`) for `create.create_vm()`, then show the job's
live progress."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from networking.models import Network
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Host, Job, Project
from panel.permissions import ALLOCATE, USE_NETWORK, VIEW, is_admin, project_ids, restrict
from storage import services as storage_services
from storage.models import StoragePool, Volume

from .install import osinfo
from .models import AffinityGroup, Template
from .services import create


def _projects(user: Any, privileges: tuple[str, ...], *, wide: bool = False) -> Any:
    if is_admin(user):
        return Project.objects.order_by("name")
    return Project.objects.filter(pk__in=project_ids(user, *privileges, wide=wide)).order_by("name")


def _variants() -> list[Any]:
    return [osinfo.GENERIC, *osinfo.variants()]


def _os_variant(value: str) -> str:
    """The chosen OS variant's short id as osinfo-db names it (generic when none is chosen):
    the page offers only these, a typed or stale value gets an answer saying what to do."""
    found = osinfo.variant(value.strip() or osinfo.GENERIC.short_id)
    if found is None:
        raise ServiceError(
            f"'{value[:60]}' is not an OS variant osinfo-db knows: type part of its name in "
            "the OS variant search (e.g. ubuntu, debian 12, win11) and pick one from the list, "
            "or choose Generic OS.",
            field="os_variant",
        )
    return found.short_id


def _request_from_form(post: Any, files: Any) -> dict[str, Any]:
    """The API's create request from the wizard's fields."""
    return {
        "name": post.get("name", ""),
        "project": post.get("project"),
        "host": post.get("host") or None,
        "affinity_group": post.get("affinity_group") or None,
        "os_variant": _os_variant(post.get("os_variant", "")),
        "vcpus": post.get("vcpus", 1),
        "memory_mib": post.get("memory_mib", 1024),
        "firmware": post.get("firmware", "bios"),
        "disks": _disks_from_form(post),
        "networks": post.getlist("networks"),
        "install": _install_from_form(post, files),
        "start": post.get("start") == "1",
    }


def _install_from_form(post: Any, files: Any) -> dict[str, Any]:
    """The request's install part: the method chosen and that method's fields."""
    method = post.get("method", "iso")
    install: dict[str, Any] = {"method": method}
    if method == "iso":
        install.update(_image_choice(post.get("iso_volume", ""), "iso_volume"))
    elif method == "url":
        kickstart = post.get("kickstart", "")
        if files.get("kickstart_file"):
            kickstart = files["kickstart_file"].read(256 * 1024).decode("utf-8", "replace")
        install.update(
            location=post.get("location", ""),
            extra_args=post.get("extra_args", ""),
            kickstart=kickstart,
        )
    elif method == "kernel":
        install.update(
            kernel=post.get("kernel", ""),
            initrd=post.get("initrd", ""),
            cmdline=post.get("cmdline", ""),
        )
    elif method == "import":
        install["volume"] = post.get("import_volume")
    elif method == "cloud-image":
        install.update(_image_choice(post.get("image_volume", ""), "image_volume"))
        install.update(
            linked=post.get("linked") == "1",
            hostname=post.get("name", ""),
            cloud_init=_cloud_init_from_form(post),
        )
    return install


LIBRARY_CHOICE = "library:"


def _image_choice(value: str, field: str) -> dict[str, Any]:
    """A volume's id, or (library:<id>) an image of the library."""
    if value.startswith(LIBRARY_CHOICE):
        return {"library_image": value.removeprefix(LIBRARY_CHOICE)}
    return {field: value}


def _cloud_init_from_form(post: Any) -> dict[str, Any]:
    """A user, password and keys (the simple mode), or the cloud-init documents as given."""
    if post.get("ci_mode") == "simple":
        return {
            "user": post.get("ci_user", ""),
            "password": post.get("ci_password", ""),
            "ssh_keys": [k for k in post.get("ci_keys", "").splitlines() if k.strip()],
        }
    return {
        "user_data": post.get("user_data", ""),
        "meta_data": post.get("meta_data", ""),
        "network_config": post.get("network_config", ""),
    }


def _disks_from_form(post: Any) -> list[dict[str, Any]]:
    """A new disk in a pool, an existing volume, both or neither."""
    disks = []
    if post.get("disk_pool") and post.get("disk_size_gib"):
        disks.append(
            {
                "pool": post.get("disk_pool"),
                "size_gib": post.get("disk_size_gib"),
                "format": post.get("disk_format", "qcow2"),
                "preallocation": post.get("disk_preallocation", "off"),
            }
        )
    if post.get("disk_volume"):
        disks.append({"volume": post.get("disk_volume")})
    return disks


WIZARD_DEFAULTS: dict[str, Any] = {
    # Booting an installer ISO comes first, as in Proxmox and Cockpit; the API names no default.
    "method": "iso",
    "os_variant": osinfo.GENERIC.short_id,
    "start": "1",
    "vcpus": 1,
    "memory_mib": 1024,
    "disk_size_gib": 10,
}


def vm_create(request: HttpRequest) -> HttpResponse:
    """The full wizard: every install source, for admins and operators."""
    projects = _projects(request.user, (ALLOCATE,), wide=True)
    if not projects.exists():
        if restrict(Template.objects.all(), request.user, VIEW).exists():
            return redirect("vm_create_from_template")
        raise PermissionDenied("Creating VMs needs the operator role in a project, or a template.")
    if request.method != "POST":
        return _wizard(request, projects, WIZARD_DEFAULTS, None)
    try:
        job = create.create_vm(
            create.CreateRequest.parse(_request_from_form(request.POST, request.FILES)),
            actor=Actor.of(request),
        )
    except ServiceError as exc:
        return _wizard(request, projects, request.POST.dict(), exc)
    return _creating(request, job)


def _creating(request: HttpRequest, job: Job) -> HttpResponse:
    """The create job's page, where its progress shows live."""
    messages.info(request, f"Creating {job.result['vm_name']} (job #{job.pk}).")
    return redirect("job_detail", job_id=job.pk)


def _wizard(
    request: HttpRequest, projects: Any, values: dict[str, Any], error: ServiceError | None
) -> HttpResponse:
    """The wizard's form, filled with values, with what the user may choose from."""
    user = request.user
    volumes = restrict(Volume.objects.select_related("pool"), user, VIEW).order_by(
        "pool__name", "name"
    )
    common = osinfo.common()
    library = storage_services.visible_images(user).filter(state="ready")
    context = {
        "values": values,
        "error": error,
        "projects": projects,
        "hosts": restrict(Host.objects.all(), user, VIEW).order_by("name"),
        "affinity_groups": restrict(
            AffinityGroup.objects.select_related("project"), user, VIEW
        ).filter(project__in=projects),
        "pools": restrict(
            StoragePool.objects.filter(state="active").select_related("host"), user, VIEW
        ),
        "networks": restrict(Network.objects.select_related("host"), user, USE_NETWORK),
        "volumes": volumes,
        "isos": storage_services.cd_images(volumes),
        "library_isos": library.filter(kind="iso"),
        "library_clouds": library.filter(kind="cloud"),
        "variants": _variants(),
        "common_variants": common,
        "common_ids": {v.short_id for v in common},
        "methods": create.METHODS,
    }
    return render(request, "vms/vm_create.html", context, status=400 if error else 200)


def _easy_request(values: dict[str, Any]) -> dict[str, Any]:
    """The create request of the template's easy form (no size: the template's)."""
    data = {
        "template": values.get("template"),
        "project": values.get("project"),
        "name": values.get("name", ""),
        "ssh_key": values.get("ssh_key", ""),
        "password": values.get("password", ""),
        "user": values.get("user") or "cloud",
    }
    if values.get("size_gib"):
        data["size_gib"] = values["size_gib"]
    return data


def vm_create_from_template(request: HttpRequest) -> HttpResponse:
    """The easy form: template, name, size, SSH key."""
    templates = restrict(Template.objects.prefetch_related("projects"), request.user, VIEW)
    if is_admin(request.user):
        templates = Template.objects.prefetch_related("projects")
    projects = _projects(request.user, (ALLOCATE,))
    error, values = None, request.POST.dict()
    if request.method == "POST":
        try:
            wanted = create.CreateRequest.parse(_easy_request(values))
            job = create.create_vm(wanted, actor=Actor.of(request))
        except ServiceError as exc:
            error = exc
        else:
            return _creating(request, job)
    return render(
        request,
        "vms/vm_create_template.html",
        {"templates": templates, "projects": projects, "values": values, "error": error},
        status=400 if error else 200,
    )


def template_list(request: HttpRequest) -> HttpResponse:
    if not is_admin(request.user):
        raise PermissionDenied("Only administrators manage templates.")
    error = None
    if request.method == "POST":
        try:
            template = _save_template(request.POST)
        except ServiceError as exc:
            error = exc
        else:
            messages.success(request, f"Template {template.name} saved.")
            return redirect("template_list")
    context = {
        "templates": Template.objects.prefetch_related(
            "projects", "pools", "networks"
        ).select_related("image"),
        "images": Volume.objects.select_related("pool").order_by("pool__name", "name"),
        "projects": Project.objects.order_by("name"),
        "pools": StoragePool.objects.select_related("host"),
        "networks": Network.objects.select_related("host"),
        "variants": _variants(),
        "error": error,
        "values": request.POST.dict() if error else {},
    }
    return render(request, "vms/template_list.html", context, status=400 if error else 200)


def _save_template(post: Any) -> Template:
    name = post.get("name", "").strip()
    if not name or len(name) > 100:
        raise ServiceError("Give the template a name (up to 100 characters).", field="name")
    if Template.objects.filter(name=name).exists():
        raise ServiceError(f"A template named {name} exists already.", field="name")
    source = post.get("source", "cloud-image")
    if source not in dict(Template.SOURCES):
        raise ServiceError("Choose the install source.", field="source")
    image = Volume.objects.filter(pk=post.get("image") or 0).first()
    if source in ("cloud-image", "iso") and image is None:
        raise ServiceError("Choose the image volume.", field="image")
    if source == "iso" and image is not None:
        storage_services.require_cd_image(image, "image")
    numbers = {}
    for field, low, high in (
        ("vcpus", 1, 256),
        ("memory_mib", 32, 4 * 1024 * 1024),
        ("disk_gib", 1, 64 * 1024),
        ("max_vcpus", 1, 256),
        ("max_memory_mib", 32, 4 * 1024 * 1024),
        ("max_disk_gib", 1, 64 * 1024),
    ):
        try:
            numbers[field] = int(post.get(field))
        except (TypeError, ValueError):
            raise ServiceError(f"{field} must be a whole number.", field=field) from None
        if not low <= numbers[field] <= high:
            raise ServiceError(f"{field} must be between {low} and {high}.", field=field)
    for field in ("vcpus", "memory_mib", "disk_gib"):
        if numbers[field] > numbers[f"max_{field}"]:
            raise ServiceError(f"The default {field} is above its limit.", field=field)
    template = Template.objects.create(
        name=name,
        description=post.get("description", ""),
        source=source,
        image=image,
        location=post.get("location", ""),
        os_variant=post.get("os_variant", ""),
        firmware="efi" if post.get("firmware") == "uefi" else "bios",
        **numbers,
    )
    template.projects.set(Project.objects.filter(pk__in=post.getlist("projects")))
    template.pools.set(StoragePool.objects.filter(pk__in=post.getlist("pools")))
    template.networks.set(Network.objects.filter(pk__in=post.getlist("networks")))
    return template


@require_POST
def template_delete(request: HttpRequest, template_id: int) -> HttpResponse:
    if not is_admin(request.user):
        raise PermissionDenied("Only administrators manage templates.")
    Template.objects.filter(pk=template_id).delete()
    return redirect("template_list")
