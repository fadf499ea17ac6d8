from django.urls import path

from . import views

urlpatterns = [
    path("", views.network_list, name="network_list"),
    path("add/", views.network_add, name="network_add"),
    path("<int:network_id>/", views.network_detail, name="network_detail"),
    path("<int:network_id>/autostart/", views.network_autostart, name="network_autostart"),
    path("<int:network_id>/delete/", views.network_delete, name="network_delete"),
    path("<int:network_id>/start/", views.network_start, name="network_start"),
    path("<int:network_id>/stop/", views.network_stop, name="network_stop"),
    path("hosts/<int:host_id>/interfaces/", views.host_interfaces, name="host_interfaces"),
]
