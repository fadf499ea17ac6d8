from django.urls import path

from . import views

urlpatterns = [
    path("<uuid:vm_id>/tuning/", views.vm_tuning_page, name="vm_tuning_page"),
    path("<uuid:vm_id>/tuning/<str:what>/", views.vm_tune, name="vm_tune_page"),
]
