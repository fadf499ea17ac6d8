from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .permissions import visible_vms


def vm_list(request: HttpRequest) -> HttpResponse:
    vms = visible_vms(request.user).select_related("host")
    return render(request, "vms/vm_list.html", {"vms": vms})
