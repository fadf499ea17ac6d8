from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from panel.permissions import restrict

from .models import StoragePool


def pool_list(request: HttpRequest) -> HttpResponse:
    pools = restrict(StoragePool.objects.select_related("host"), request.user)
    return render(request, "storage/pool_list.html", {"pools": pools})
