from django.urls import path

from . import views

urlpatterns = [path("", views.pool_list, name="pool_list")]
