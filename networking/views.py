from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from panel.permissions import is_admin

from .models import Network


def network_list(request: HttpRequest) -> HttpResponse:
    networks = (
        Network.objects.select_related("host") if is_admin(request.user) else Network.objects.none()
    )
    return render(request, "networking/network_list.html", {"networks": networks})
