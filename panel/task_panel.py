"""What the task panel at the foot of every page shows: among the jobs the user may see,
those queued or running first, then the latest finished ones, ROWS in all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .choices import JobState
from .permissions import visible_jobs

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import Job
    from .permissions import Person

ACTIVE = (JobState.QUEUED, JobState.RUNNING)
ROWS = 8
# What a row shows (the log and the secrets stay in the database).
FIELDS = ("kind", "state", "progress", "target", "host", "result", "created", "user__username")


@dataclass(frozen=True)
class TaskPanel:
    jobs: Sequence[Any]  # the jobs shown (or only their id and state: rows=False)
    running: int  # queued or running, all of them (there may be more than ROWS)

    @property
    def signature(self) -> str:
        """The rows as they stand: while the page's panel has this, it needs no new rows
        (progress comes live over each running job's websocket)."""
        return f"{self.running};" + ",".join(f"{job.id}:{job.state}" for job in self.jobs)


def recent_tasks(user: Person, *, rows: bool = True) -> TaskPanel:
    """Two queries (three with more than ROWS running), each served by an index on the
    jobs: by state, and newest first. Without rows, only each job's id and state: what
    the panel's bar and signature need."""
    visible = visible_jobs(user).select_related(None)
    jobs: QuerySet[Job, Any] = (
        visible.select_related("user").only(*FIELDS)
        if rows
        else visible.values_list("id", "state", named=True)
    )
    shown = list(jobs.filter(state__in=ACTIVE)[:ROWS])
    running = len(shown) if len(shown) < ROWS else jobs.filter(state__in=ACTIVE).count()
    if len(shown) < ROWS:
        shown += jobs.exclude(state__in=ACTIVE)[: ROWS - len(shown)]
    return TaskPanel(jobs=shown, running=running)
