"""Moving a domain to another host: the pre-check, the migration itself, its progress
and its cancellation.

    values    the options, progress readings, copied disks and result, and shared constants
    domain    what the other modules read from a domain and its hosts (disks, devices, pools)
    checks    the pre-check: one Check per condition the target must meet
    run       the migration itself: copies, parameters, progress, abort and result
    settle    after a migration: leftover volumes, where the domain is, settling one whose
              driving process died
"""

from panel.hypervisor.migration.checks import migration_checks as migration_checks
from panel.hypervisor.migration.run import migrate_domain as migrate_domain
from panel.hypervisor.migration.settle import Settled as Settled
from panel.hypervisor.migration.settle import delete_volumes as delete_volumes
from panel.hypervisor.migration.settle import domain_location as domain_location
from panel.hypervisor.migration.settle import settle_migration as settle_migration
from panel.hypervisor.migration.values import NEEDS_COPY as NEEDS_COPY
from panel.hypervisor.migration.values import DiskCopy as DiskCopy
from panel.hypervisor.migration.values import MigrationOptions as MigrationOptions
from panel.hypervisor.migration.values import MigrationProgress as MigrationProgress
from panel.hypervisor.migration.values import MigrationResult as MigrationResult
from panel.hypervisor.migration.values import default_migration_uri as default_migration_uri
from panel.hypervisor.migration.values import migration_endpoint as migration_endpoint
