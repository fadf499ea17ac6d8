"""The VM's tuning tab and its forms, under vms/ before vms.urls (whose <uuid>/<action>/
would take <uuid>/tuning/)."""

from django.urls import path

from . import tuning_views as views

urlpatterns = [
    path("<uuid:vm_id>/tuning/", views.vm_tuning_page, name="vm_tuning_page"),
    path("<uuid:vm_id>/tuning/vcpus/", views.vm_tune_vcpus, name="vm_tune_vcpus"),
    path("<uuid:vm_id>/tuning/memory/", views.vm_tune_memory, name="vm_tune_memory"),
    path("<uuid:vm_id>/tuning/vcpupin/", views.vm_tune_vcpupin, name="vm_tune_vcpupin"),
    path("<uuid:vm_id>/tuning/emulatorpin/", views.vm_tune_emulatorpin, name="vm_tune_emulatorpin"),
    path("<uuid:vm_id>/tuning/iotune/", views.vm_tune_iotune, name="vm_tune_iotune"),
    path("<uuid:vm_id>/tuning/max-vcpus/", views.vm_tune_max_vcpus, name="vm_tune_max_vcpus"),
    path("<uuid:vm_id>/tuning/max-memory/", views.vm_tune_max_memory, name="vm_tune_max_memory"),
    path("<uuid:vm_id>/tuning/hugepages/", views.vm_tune_hugepages, name="vm_tune_hugepages"),
    path("<uuid:vm_id>/tuning/numatune/", views.vm_tune_numatune, name="vm_tune_numatune"),
    path(
        "<uuid:vm_id>/tuning/nic-bandwidth/",
        views.vm_tune_nic_bandwidth,
        name="vm_tune_nic_bandwidth",
    ),
]
