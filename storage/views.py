from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from panel.permissions import is_admin

from .models import StoragePool


def pool_list(request: HttpRequest) -> HttpResponse:
    pools = (
        StoragePool.objects.select_related("host")
        if is_admin(request.user)
        else StoragePool.objects.none()
    )
    return render(request, "storage/pool_list.html", {"pools": pools})
