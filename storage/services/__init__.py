"""Storage pools and volumes: validate, act on the host, keep the rows in step.

Pools are infrastructure (admins only). Volumes belong to a project and count
against its disk quota; operators act on all of their project's volumes,
members on their own. Quick actions answer at once; copies, conversions,
wipes, preallocated creates and uploads report through a Job.

Modules:
- validation: names, paths, sizes, formats and pool specs the panel accepts;
- sync: the host's pools and volumes as rows (sync, refresh, sizes after a change);
- trust: recorded formats and chains, the header checks before qemu opens an image, and
  which volumes are installer ISOs;
- pools: pool actions for admins (create, build/start/stop/refresh, autostart, delete);
- common: what volume actions share (their checks, the new volume's row, the queued job);
- volumes: create, resize, delete, clone, convert and wipe a volume;
- details: a volume's details and check result, its assignment and sharing;
- transfers: uploads into a volume and downloads of one;
- volume_jobs: the body of the volume jobs and what undoes them;
- library: the image library (ISOs and cloud images admins publish, who may use them);
- library_fetch: the job that fetches a library image from its URL and verifies it.
"""

from panel.exceptions import ConflictError, ServiceError

from .common import vms_using
from .details import assign_volume, check_volume, set_shared, volume_details
from .library import (
    ImageSpec,
    add_from_url,
    add_from_volume,
    delete_image,
    parse_projects,
    undo_abandoned_fetch,
    update_image,
    usable_image,
    visible_images,
)
from .library_fetch import run_fetch as run_library_fetch
from .library_fetch import sha256_in_sums
from .pools import (
    create_pool,
    delete_pool,
    pool_action,
    set_pool_autostart,
    set_pool_shared_storage,
)
from .sync import observed, refresh_pool_row, sync_pools
from .transfers import open_download, run_upload, start_upload
from .trust import (
    as_backing,
    cd_images,
    check_content,
    check_vm_disks,
    record_made,
    recorded_chains,
    require_cd_image,
)
from .validation import (
    FIELD_LABELS,
    FORMATS,
    NAME_RE,
    POOL_TYPES,
    PREALLOCATION,
    SOURCE_FORMATS,
    capacity_bytes,
)
from .volume_jobs import remove_leftovers, remove_made_volumes, run_volume_job, undo_abandoned
from .volumes import copy_volume, create_volume, delete_volume, may_copy, resize_volume, wipe_volume

__all__ = [
    "FIELD_LABELS",
    "FORMATS",
    "ImageSpec",
    "NAME_RE",
    "POOL_TYPES",
    "PREALLOCATION",
    "SOURCE_FORMATS",
    "ConflictError",
    "ServiceError",
    "add_from_url",
    "add_from_volume",
    "as_backing",
    "assign_volume",
    "capacity_bytes",
    "cd_images",
    "check_content",
    "check_vm_disks",
    "check_volume",
    "copy_volume",
    "create_pool",
    "create_volume",
    "delete_pool",
    "delete_image",
    "delete_volume",
    "may_copy",
    "observed",
    "open_download",
    "parse_projects",
    "pool_action",
    "record_made",
    "recorded_chains",
    "refresh_pool_row",
    "remove_leftovers",
    "remove_made_volumes",
    "require_cd_image",
    "resize_volume",
    "run_library_fetch",
    "run_upload",
    "run_volume_job",
    "set_pool_autostart",
    "set_pool_shared_storage",
    "set_shared",
    "sha256_in_sums",
    "start_upload",
    "sync_pools",
    "undo_abandoned",
    "undo_abandoned_fetch",
    "update_image",
    "usable_image",
    "visible_images",
    "vms_using",
    "volume_details",
    "wipe_volume",
]
