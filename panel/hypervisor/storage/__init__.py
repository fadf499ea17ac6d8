"""Storage pools and volumes on a host, and disks on domains.

Pools and volumes are named by (pool name, volume name), as virsh does. Long
operations (copy, convert, upload, download) take a `progress(done, total)`
callback; it runs in the caller's thread and may raise to stop the work.

    pools     pool types and capabilities, defining, starting, stopping, deleting pools;
              looking up a pool, or a volume of a running pool, by name
    volumes   creating, listing, resizing, wiping and deleting volumes; a volume by path
    copies    copying images as their recorded format says, and the checks before one opens
    streams   volume contents through libvirt streams: a head, uploads, downloads
    disks     attaching and detaching disks, changing a CD-ROM's medium
"""

from panel.hypervisor.storage.copies import check_source as check_source
from panel.hypervisor.storage.copies import copy_image as copy_image
from panel.hypervisor.storage.copies import copy_volume as copy_volume
from panel.hypervisor.storage.copies import inspect_volume as inspect_volume
from panel.hypervisor.storage.copies import recorded_capacity as recorded_capacity
from panel.hypervisor.storage.disks import attach_disk as attach_disk
from panel.hypervisor.storage.disks import change_media as change_media
from panel.hypervisor.storage.disks import detach_disk as detach_disk
from panel.hypervisor.storage.pools import POOL_TYPES as POOL_TYPES
from panel.hypervisor.storage.pools import define_pool as define_pool
from panel.hypervisor.storage.pools import delete_pool as delete_pool
from panel.hypervisor.storage.pools import get_pool as get_pool
from panel.hypervisor.storage.pools import pool_action as pool_action
from panel.hypervisor.storage.pools import pool_capabilities as pool_capabilities
from panel.hypervisor.storage.pools import pool_xml as pool_xml
from panel.hypervisor.storage.pools import refresh_pool as refresh_pool
from panel.hypervisor.storage.pools import set_pool_autostart as set_pool_autostart
from panel.hypervisor.storage.streams import download_volume as download_volume
from panel.hypervisor.storage.streams import upload_volume as upload_volume
from panel.hypervisor.storage.volumes import create_volume as create_volume
from panel.hypervisor.storage.volumes import delete_volume as delete_volume
from panel.hypervisor.storage.volumes import get_volume as get_volume
from panel.hypervisor.storage.volumes import list_volumes as list_volumes
from panel.hypervisor.storage.volumes import resize_volume as resize_volume
from panel.hypervisor.storage.volumes import volume_by_path as volume_by_path
from panel.hypervisor.storage.volumes import volume_xml as volume_xml
from panel.hypervisor.storage.volumes import wipe_volume as wipe_volume
