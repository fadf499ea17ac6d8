"""What the task panel at the foot of every page shows: among the jobs the user may see,
those queued or running first, then the latest finished ones, ROWS in all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .choices import JobState
from .models import Job
from .permissions import visible_jobs

if TYPE_CHECKING:
    from .permissions import Person

ACTIVE = (JobState.QUEUED, JobState.RUNNING)
ROWS = 8
# What a row shows (the log and the secrets stay in the database).
FIELDS = ("kind", "state", "progress", "target", "host", "result", "created", "user__username")


@dataclass(frozen=True)
class TaskPanel:
    jobs: list[Job]
    running: int  # queued or running, all of them (there may be more than ROWS)

    @property
    def signature(self) -> str:
        """The rows as they stand: while the page's panel has this, it needs no new rows
        (progress comes live over each running job's websocket)."""
        return f"{self.running};" + ",".join(f"{job.pk}:{job.state}" for job in self.jobs)


def recent_tasks(user: Person) -> TaskPanel:
    """Two queries (three with more than ROWS running), each served by an index on
    the jobs: by state, and newest first."""
    jobs = visible_jobs(user).select_related(None).select_related("user").only(*FIELDS)
    shown = list(jobs.filter(state__in=ACTIVE)[:ROWS])
    running = len(shown) if len(shown) < ROWS else jobs.filter(state__in=ACTIVE).count()
    if len(shown) < ROWS:
        shown += jobs.exclude(state__in=ACTIVE)[: ROWS - len(shown)]
    return TaskPanel(jobs=shown, running=running)
