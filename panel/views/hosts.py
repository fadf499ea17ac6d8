"""Dashboard, hosts and jobs pages."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from panel import services
from panel.actors import Actor
from panel.choices import HostFencing, HostState, JobKind
from panel.exceptions import ServiceError
from panel.forms import HostCertificatesForm, HostForm, pem_files
from panel.models import Host, HostCertificates, Job
from panel.paging import page_of
from panel.permissions import (
    ADMINISTER,
    AUDIT,
    can_manage_hosts,
    get_object_for_user,
    visible_hosts,
    visible_jobs,
)
from panel.services import host_keys, host_tls
from panel.services.host_tls import NEEDED
from panel.task_panel import recent_tasks
from panel.views.common import add_service_error, render_form

# The dashboard shows this many host cards, taking hosts that are not up first; the
# host list shows them all.
DASHBOARD_HOSTS = 12


def dashboard(request: HttpRequest) -> HttpResponse:
    brief = list(visible_hosts(request.user).order_by("name").values_list("pk", "state"))
    # Hosts that are not up, then the first of the others (by name), in name order.
    first = [pk for pk, _ in sorted(brief, key=lambda h: h[1] == HostState.UP)][:DASHBOARD_HOSTS]
    shown = visible_hosts(request.user).filter(pk__in=first).order_by("name")
    context = {
        "hosts": list(shown),
        "host_count": len(brief),
        "hosts_down": sum(state != HostState.UP for _, state in brief),
        "jobs": visible_jobs(request.user)[:8],
        "can_manage": can_manage_hosts(request.user),
    }
    return render(request, "panel/dashboard.html", context)


def host_list(request: HttpRequest) -> HttpResponse:
    hosts = list(visible_hosts(request.user).order_by("name"))
    return render(
        request,
        "panel/host_list.html",
        {"hosts": hosts, "can_manage": can_manage_hosts(request.user)},
    )


def host_add(request: HttpRequest) -> HttpResponse:
    if not can_manage_hosts(request.user):
        raise PermissionDenied("Only administrators can add hosts.")
    form = HostForm(request.POST or None, request.FILES or None)
    offered = None
    if request.method == "POST" and form.is_valid():
        try:
            host = services.add_host(**form.cleaned_data, actor=Actor.of(request))
        except host_keys.HostKeyToConfirm as exc:
            offered, data = exc.key, request.POST.copy()
            data["ssh_fingerprint"] = offered.fingerprint
            form = HostForm(data)
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Host {host.name} added; its checks are running.")
            return redirect("host_detail", host_id=host.pk)
    context = {"offered": offered, "panel_key": host_keys.panel_public_key(Actor.of(request))}
    return render_form(request, "panel/host_form.html", context, form)


def host_detail(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id)
    jobs_here = visible_jobs(request.user).filter(host=host)
    # In maintenance, the drain's progress (its migrations are jobs of their own).
    drains = jobs_here.filter(kind=JobKind.HOST_DRAIN) if host.maintenance else jobs_here.none()
    job = drains.first() or jobs_here.first()
    manage = can_manage_hosts(request.user)
    context = {
        "host": host,
        "job": job,
        "can_manage": manage,
        "reach": host_keys.reach(host) if manage else None,
        "certificates": HostCertificates.objects.filter(host=host).first(),
        "certificates_form": HostCertificatesForm(),
        "fencing_choices": HostFencing.choices,
    }
    return render(request, "panel/host_detail.html", context)


@require_POST
def host_certificates(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id, ADMINISTER)
    form = HostCertificatesForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, NEEDED)
        return redirect("host_detail", host_id=host.pk)
    try:
        row = host_tls.replace_certificates(
            host, pem_files(form.cleaned_data), actor=Actor.of(request)
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"{host.name} accepted the new certificates; the panel uses them from now on "
            f"(client certificate valid until {row.client_not_after:%Y-%m-%d}).",
        )
    return redirect("host_detail", host_id=host.pk)


@require_POST
def host_migration_address(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id, ADMINISTER)
    if "migration_address" not in request.POST:
        messages.error(request, "Give a migration address, or an empty one to clear it.")
        return redirect("host_detail", host_id=host.pk)
    try:
        services.set_migration_address(
            host, request.POST["migration_address"], actor=Actor.of(request)
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        where = host.migration_address or "the host part of its URI"
        messages.success(request, f"Migrations to {host.name} now go to {where}.")
    return redirect("host_detail", host_id=host.pk)


@require_POST
def host_accept_key(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id, ADMINISTER)
    try:
        host_keys.accept_host_key(
            host, request.POST.get("fingerprint", ""), actor=Actor.of(request)
        )
        services.refresh_host(host, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The new SSH host key of {host.name} is pinned.")
    return redirect("host_detail", host_id=host.pk)


@require_POST
def host_refresh(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id, ADMINISTER)
    try:
        job = services.refresh_host(host, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"Refresh of {host.name} started (job #{job.pk}).")
    return redirect("host_detail", host_id=host.pk)


@require_POST
def host_delete(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id, ADMINISTER)
    services.delete_host(host, actor=Actor.of(request))
    messages.success(request, f"Host {host.name} removed from the panel.")
    return redirect("host_list")


def job_list(request: HttpRequest) -> HttpResponse:
    page, query = page_of(request, visible_jobs(request.user))
    return render(request, "panel/job_list.html", {"jobs": page, "page": page, "query": query})


@require_safe
def job_panel(request: HttpRequest) -> HttpResponse:
    """The task panel's rows, which its script asks for every few seconds while the page
    is in view: 204 while they are still those the page has (seen), so an idle panel
    costs two small queries and no rendering."""
    panel = recent_tasks(request.user)
    if request.GET.get("seen") == panel.signature:
        return HttpResponse(status=204)
    return render(request, "panel/_task_rows.html", {"panel": panel})


def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_for_user(Job.objects.select_related("user"), request.user, job_id)
    goto = None
    if job.kind == JobKind.VM_CREATE and job.result.get("vm"):
        # A create's page moves on to the new VM once it is up.
        goto = reverse("vm_detail", kwargs={"vm_id": job.result["vm"]})
    return render(request, "panel/job_detail.html", {"job": job, "goto_on_success": goto})


@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_for_user(Job.objects.all(), request.user, job_id, AUDIT)
    try:
        services.cancel_job(job, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("job_detail", job_id=job.pk)
