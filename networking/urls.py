from django.urls import path

from . import views

urlpatterns = [path("", views.network_list, name="network_list")]
