"""Full, consistent backups of a domain's disks into a storage pool, and restores from them.

take      the three ways to a consistent copy (offline, push, snapshot) and the backup
restore   restoring as a new domain, or in place of a shut-off domain's disks
elsewhere restoring as a new domain on another host, through libvirt's streams
abandon   cleaning up after a backup whose process died
checkpoints  the points incremental backups start from, dropped when the disks change
fold      an incremental copy written into the one below it, when retention drops that one
verify    digests of the copies, and a point restored into a scratch volume and read back
common    what they share: file-backed disks, the backup pool, the flattened copy
"""

from panel.hypervisor.backups.abandon import Abandoned as Abandoned
from panel.hypervisor.backups.abandon import abandon_backup as abandon_backup
from panel.hypervisor.backups.checkpoints import delete_checkpoint as delete_checkpoint
from panel.hypervisor.backups.common import BackupDisk as BackupDisk
from panel.hypervisor.backups.elsewhere import restore_on_host as restore_on_host
from panel.hypervisor.backups.fold import fold_copy as fold_copy
from panel.hypervisor.backups.fold import relink_copy as relink_copy
from panel.hypervisor.backups.restore import restore_as_new as restore_as_new
from panel.hypervisor.backups.restore import restore_in_place as restore_in_place
from panel.hypervisor.backups.take import BACKUP_METHODS as BACKUP_METHODS
from panel.hypervisor.backups.take import BackupResult as BackupResult
from panel.hypervisor.backups.take import Chain as Chain
from panel.hypervisor.backups.take import backup_api_supported as backup_api_supported
from panel.hypervisor.backups.take import backup_domain as backup_domain
from panel.hypervisor.backups.verify import check_copy as check_copy
from panel.hypervisor.backups.verify import file_digest as file_digest
from panel.hypervisor.backups.verify import restored_digest as restored_digest
