"""Writing rows that another process may delete meanwhile.

The web server, the workers, the watcher and the collector all write the inventory.
A service that reads a row, works (a libvirt call, a job step), then writes it back
must expect the row to be gone by then: a delete job or the watcher removed it. On
PostgreSQL a plain ``save(update_fields=...)`` then fails ("did not affect any rows")
and a plain ``save()`` puts the deleted row back; SQLite hides both behind its one
writer at a time. These helpers lock the row before writing, so a concurrent delete
waits for the write or the write sees the row gone, on both databases.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from django.db import models, transaction

M = TypeVar("M", bound=models.Model)


def _rows_of(obj: models.Model) -> models.QuerySet:
    # obj.__class__, not type(obj): request.user is a lazy object that proxies __class__.
    # FOR NO KEY UPDATE (PostgreSQL): it keeps a delete out, and lets other transactions
    # add rows that refer to this one (a VM on a host) meanwhile. SQLite has one writer.
    return obj.__class__._base_manager.select_for_update(no_key=True).filter(pk=obj.pk)


def lock(obj: M) -> M | None:
    """obj's row, read again and locked until the caller's transaction ends; None when gone."""
    return _rows_of(obj).first()


def save_if_present(obj: models.Model, fields: Iterable[str]) -> bool:
    """Write these fields of obj if its row still exists; False (nothing written) if not."""
    with transaction.atomic():
        if not _rows_of(obj).exists():
            return False
        obj.save(update_fields=list(fields))
    return True
