from django.urls import path

from . import views

urlpatterns = [
    path("", views.network_list, name="network_list"),
    path("add/", views.network_add, name="network_add"),
    path("<int:network_id>/", views.network_detail, name="network_detail"),
    path("<int:network_id>/<slug:action>/", views.network_action, name="network_action"),
    path("hosts/<int:host_id>/interfaces/", views.host_interfaces, name="host_interfaces"),
]
