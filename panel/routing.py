from django.urls import path

from storage.consumers import VolumeUploadConsumer
from vms.consumers import SerialConsoleConsumer, VncViewConsumer
from vms.sockets import HostConsumer, VMConsumer, VMRowsConsumer

from . import consumers

websocket_urlpatterns = [
    path("ws/jobs/<int:job_id>/", consumers.JobConsumer.as_asgi()),
    path("ws/notifications/", consumers.NotificationConsumer.as_asgi()),
    path("ws/hosts/<int:host_id>/", HostConsumer.as_asgi()),
    path("ws/vms/<uuid:vm_id>/", VMConsumer.as_asgi()),
    path("ws/vm-rows/", VMRowsConsumer.as_asgi()),
    path("ws/vms/<uuid:vm_id>/serial/", SerialConsoleConsumer.as_asgi()),
    path("ws/vms/<uuid:vm_id>/vnc-view/", VncViewConsumer.as_asgi()),
    path("ws/volumes/<int:volume_id>/upload/", VolumeUploadConsumer.as_asgi()),
]
