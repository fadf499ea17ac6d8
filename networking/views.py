from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from panel.permissions import restrict

from .models import Network


def network_list(request: HttpRequest) -> HttpResponse:
    networks = restrict(Network.objects.select_related("host"), request.user)
    return render(request, "networking/network_list.html", {"networks": networks})
