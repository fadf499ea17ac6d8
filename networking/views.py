"""Network pages: list per host, create form, details with leases and VMs, host interfaces."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from panel import hypervisor
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Host
from panel.permissions import get_object_for_user, is_admin, restrict, visible_hosts
from panel.views.common import render_form

from . import services
from .choices import MODE_HELP, NetworkMode
from .forms import NetworkForm, add_error
from .models import Network


def network_list(request: HttpRequest) -> HttpResponse:
    networks = restrict(Network.objects.select_related("host"), request.user)
    host_id = request.GET.get("host", "")
    if host_id.isdigit():
        networks = networks.filter(host_id=int(host_id))
    context = {
        "networks": networks,
        "hosts": visible_hosts(request.user),
        "host_filter": host_id,
        "is_admin": is_admin(request.user),
    }
    return render(request, "networking/network_list.html", context)


def network_add(request: HttpRequest) -> HttpResponse:
    if not is_admin(request.user):
        raise PermissionDenied("Only administrators can create networks: they are infrastructure.")
    hosts = visible_hosts(request.user)
    form = NetworkForm(request.POST or None, hosts=hosts, initial={"host": request.GET.get("host")})
    if request.method == "POST" and form.is_valid():
        try:
            network = services.create_network(
                form.cleaned_data["host"],
                **form.service_kwargs(),
                actor=Actor.of(request),
            )
        except ServiceError as exc:
            add_error(form, exc)
        else:
            messages.success(request, f"Network {network.name} created on {network.host.name}.")
            return redirect("network_detail", network_id=network.pk)
    modes = [(NetworkMode(m).label, text) for m, text in MODE_HELP.items()]
    return render_form(request, "networking/network_form.html", {"modes": modes}, form)


def network_detail(request: HttpRequest, network_id: int) -> HttpResponse:
    network = get_object_for_user(Network.objects.select_related("host"), request.user, network_id)
    if network.active and network.host.is_up and network.carries_ip:
        try:
            services.refresh_leases(network)
        except ServiceError as exc:
            messages.warning(request, f"Leases not refreshed: {exc.message}")
    context = {
        "network": network,
        "leases": services.leases_for_user(network, request.user),
        "vms": services.vms_on_network(network, request.user),
        "is_admin": is_admin(request.user),
        "mode_help": MODE_HELP.get(network.mode, ""),
    }
    return render(request, "networking/network_detail.html", context)


NetworkPageForm = Callable[[HttpRequest, Network], HttpResponse | None]


def network_form(apply: NetworkPageForm) -> Callable[[HttpRequest, int], HttpResponse]:
    """The view of a network page's form whose body is apply(request, network): a refusal
    is shown as the page's error; the answer is the page again (the list once the network
    is gone), or where apply leads."""

    @require_POST
    @functools.wraps(apply)
    def view(request: HttpRequest, network_id: int) -> HttpResponse:
        network = get_object_for_user(
            Network.objects.select_related("host"), request.user, network_id
        )
        try:
            answer = apply(request, network)
        except ServiceError as exc:
            messages.error(request, exc.message)
            answer = None
        if answer is not None:
            return answer
        if not Network.objects.filter(pk=network_id).exists():
            return redirect("network_list")
        return redirect("network_detail", network_id=network_id)

    return view


@network_form
def network_autostart(request: HttpRequest, network: Network) -> None:
    """Start the network with libvirtd, or not."""
    network = services.set_network_autostart(
        network, request.POST.get("enabled") == "1", actor=Actor.of(request)
    )
    messages.success(
        request, f"Autostart of {network.name} is {network.autostart and 'on' or 'off'}."
    )


@network_form
def network_delete(request: HttpRequest, network: Network) -> HttpResponse:
    """Stop and remove the network; the list is the answer."""
    services.delete_network(network, actor=Actor.of(request))
    messages.success(request, f"Network {network.name} deleted.")
    return redirect("network_list")


def _power(request: HttpRequest, network: Network, verb: str) -> None:
    network = services.network_action(network, verb, actor=Actor.of(request))
    messages.success(
        request, f"Network {network.name} is {'active' if network.active else 'stopped'}."
    )


@network_form
def network_start(request: HttpRequest, network: Network) -> None:
    """Start the network."""
    _power(request, network, "start")


@network_form
def network_stop(request: HttpRequest, network: Network) -> None:
    """Stop the network (a transient one is gone then)."""
    _power(request, network, "stop")


def host_interfaces(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id)
    interfaces: list[hypervisor.InterfaceInfo] = []
    source, error = "", ""
    try:
        interfaces, source = services.host_interfaces(host, actor=Actor.of(request))
    except ServiceError as exc:
        error = exc.message
    context = {"host": host, "interfaces": interfaces, "source": source, "error": error}
    return render(request, "networking/host_interfaces.html", context, status=200)
