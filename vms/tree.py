"""A host's branch of the sidebar's resource tree, fetched when the user opens it: the
host's VMs (live, through the host's socket), its pools and networks, each what the
user may see."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from networking.models import Network
from panel.models import Host
from panel.permissions import VIEW, get_object_for_user, restrict
from storage.models import StoragePool

from .permissions import visible_vms

# A branch lists this many VMs; the rest are a link to the VM list filtered to the host.
BRANCH_VMS = 30


@require_safe
def host_tree(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id)
    vms = (
        visible_vms(request.user)
        .filter(host=host)
        .select_related(None)
        .only("pk", "name", "state", "host_id")
    )
    shown = list(vms[: BRANCH_VMS + 1])
    context = {
        "host": host,
        "vms": shown[:BRANCH_VMS],
        "more": vms.count() - BRANCH_VMS if len(shown) > BRANCH_VMS else 0,
        "pools": restrict(StoragePool.objects.filter(host=host), request.user, VIEW),
        "networks": restrict(Network.objects.filter(host=host), request.user, VIEW),
    }
    return render(request, "vms/_tree_host.html", context)
