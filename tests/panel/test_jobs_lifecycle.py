"""Jobs, in this process: the progress helper every task reports through (report() and
running()), a job's secrets, cancelling (by the service and from the job's page), the
refresh task itself, and the migration that scrubs the secrets old create jobs kept."""

from __future__ import annotations

import json

import pytest

from panel import jobs, services
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.models import AuditEvent, Job
from panel.tasks import refresh_host_task
from vms.models import VirtualMachine

from .conftest import FAKE_URI, STAMPED, UNREACHABLE_URI, make_host, rows


def log_lines(job: Job) -> list[str]:
    """The job's log without the timestamps, asserting every line has one."""
    lines = job.log.splitlines()
    stripped = [STAMPED.match(line) for line in lines]
    assert all(stripped), lines
    return [m.group(1) for m in stripped]


@pytest.fixture
def job(db, admin_user, host) -> Job:
    return jobs.create_job(
        JobKind.HOST_REFRESH, target="host:kvm01", actor=Actor(admin_user), host=host
    )


# --- secrets -----------------------------------------------------------------------


def test_it_keeps_a_jobs_secrets_out_of_what_it_shows_and_drops_them_when_it_ends(
    db, admin_user, host
):
    queued = jobs.queue(
        JobKind.HOST_REFRESH,
        refresh_host_task,
        host,
        target="host:kvm01",
        spec={"host": host.pk},
        actor=Actor(admin_user),
        host=host,
        project=None,
        action="host.refresh",
        secrets={"user_data": "#cloud-config\npassword: hunter2\n"},
    )
    assert jobs.secrets_of(queued.pk) == {"user_data": "#cloud-config\npassword: hunter2\n"}
    assert "hunter2" not in json.dumps(jobs.serialize(queued))
    with jobs.running(queued.pk):
        assert jobs.secrets_of(queued.pk)  # the task still has them
    assert jobs.secrets_of(queued.pk) == {}
    assert "hunter2" not in AuditEvent.objects.get(action="host.refresh").detail


# --- report() and running() -------------------------------------------------------


def test_it_reports_progress_message_and_timestamped_log_lines(job):
    jobs.report(job.pk, progress=40, message="half", log_line="x")
    jobs.report(job.pk, log_line="y")

    job.refresh_from_db()
    assert job.progress == 40
    assert job.message == "half"
    assert log_lines(job) == ["x", "y"]


def test_it_keeps_progress_between_0_and_100(job):
    jobs.report(job.pk, progress=140)
    job.refresh_from_db()
    assert job.progress == 100

    jobs.report(job.pk, progress=-5)
    job.refresh_from_db()
    assert job.progress == 0


def test_it_runs_a_job_to_success(job):
    with jobs.running(job.pk) as running:
        assert running is not None
        inside = Job.objects.get(pk=job.pk)
        jobs.report(job.pk, progress=60, message="Reading domains")

    assert inside.state == "running"
    assert inside.started is not None
    job.refresh_from_db()
    assert job.state == "succeeded"
    assert job.progress == 100
    assert job.message == "Reading domains"
    assert job.finished >= job.started


def test_it_says_done_when_a_job_left_no_message(job):
    with jobs.running(job.pk):
        pass

    job.refresh_from_db()
    assert (job.state, job.message) == ("succeeded", "Done.")


def test_it_marks_a_job_failed_on_an_unexpected_error(job):
    with pytest.raises(RuntimeError), jobs.running(job.pk):
        jobs.report(job.pk, progress=30)
        raise RuntimeError("disk on fire")

    job.refresh_from_db()
    assert job.state == "failed"
    assert job.message == "disk on fire"
    assert job.progress == 30
    assert job.finished is not None
    assert log_lines(job) == ["failed: disk on fire"]


def test_it_marks_a_job_failed_with_the_service_error_message_without_raising(job):
    with jobs.running(job.pk):
        raise ServiceError("kvm01 is down: Connection refused. Start libvirtd there.")

    job.refresh_from_db()
    assert job.state == "failed"
    assert job.message == "kvm01 is down: Connection refused. Start libvirtd there."
    assert log_lines(job) == ["failed: kvm01 is down: Connection refused. Start libvirtd there."]


def test_it_does_not_run_a_finished_job_again(job):
    with jobs.running(job.pk):
        jobs.report(job.pk, message="first run")
    job.refresh_from_db()
    before = (job.state, job.progress, job.message, job.log, job.started, job.finished)

    with jobs.running(job.pk) as running:
        assert running is None

    job.refresh_from_db()
    assert (job.state, job.progress, job.message, job.log, job.started, job.finished) == before


def test_it_yields_nothing_for_a_job_that_is_gone(db):
    with jobs.running(987654) as running:
        assert running is None


# --- cancelling ----------------------------------------------------------------------


def test_it_cancels_a_queued_job_at_once(job, admin_user):
    services.cancel_job(job, actor=Actor(admin_user))

    job.refresh_from_db()
    assert job.state == "cancelled"
    assert job.message == "Cancelled before it started."
    assert job.finished is not None
    event = AuditEvent.objects.get(action="job.cancel")
    assert (event.result, event.username, event.target) == (
        "success",
        "admin",
        f"Host refresh #{job.pk}",
    )
    # The worker that picks it up later leaves it alone.
    with jobs.running(job.pk) as running:
        assert running is None


def test_it_stops_a_running_job_at_its_next_report(job, admin_user):
    with jobs.running(job.pk):
        services.cancel_job(job, actor=Actor(admin_user))
        assert Job.objects.get(pk=job.pk).state == "running"
        jobs.report(job.pk, progress=50, log_line="still working")
        pytest.fail("report() should have stopped the cancelled job")

    job.refresh_from_db()
    assert job.state == "cancelled"
    assert job.message == "Cancelled."
    assert log_lines(job) == ["still working", "cancelled on request"]


def test_it_refuses_to_cancel_a_finished_job(job, admin_user):
    with jobs.running(job.pk):
        pass

    with pytest.raises(ConflictError, match=rf"Job #{job.pk} has already finished \(succeeded\)"):
        services.cancel_job(job, actor=Actor(admin_user))

    job.refresh_from_db()
    assert job.state == "succeeded"
    assert not job.cancel_requested
    assert not AuditEvent.objects.filter(action="job.cancel").exists()


def test_it_cancels_a_job_from_its_page(admin_client, job):
    response = admin_client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert response.redirect_chain == [(f"/jobs/{job.pk}/", 302)]
    job.refresh_from_db()
    assert job.state == "cancelled"
    assert "Cancelled before it started." in rows(response, "//*[@data-job-message]")
    assert rows(response, "//form[contains(@action, '/cancel/')]/button") == []


def test_it_says_a_finished_job_cannot_be_cancelled(admin_client, job):
    with jobs.running(job.pk):
        pass

    response = admin_client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert f"Job #{job.pk} has already finished (succeeded)." in rows(
        response, "//div[@role='alert']"
    )


def test_it_rejects_get_on_cancel(admin_client, job):
    response = admin_client.get(f"/jobs/{job.pk}/cancel/")

    assert response.status_code == 405
    job.refresh_from_db()
    assert job.state == "queued"


def test_it_hides_another_users_job_from_cancel(user_client, job):
    response = user_client.post(f"/jobs/{job.pk}/cancel/")

    assert response.status_code == 404
    job.refresh_from_db()
    assert job.state == "queued"


def test_it_sends_an_anonymous_cancel_to_login(client, job):
    response = client.post(f"/jobs/{job.pk}/cancel/")

    assert response.status_code == 302
    assert response.url.startswith("/login/")
    job.refresh_from_db()
    assert job.state == "queued"


# --- the refresh task, run in this process ---------------------------------------------


def test_it_refreshes_a_hosts_inventory_through_its_job(db, admin_user):
    host = make_host("fake", uri=FAKE_URI, facts={}, checks=[], domain_type="")
    job = services.refresh_host(host, actor=Actor(admin_user))

    refresh_host_task(job.pk)

    job.refresh_from_db()
    host.refresh_from_db()
    assert (job.state, job.progress, job.message) == ("succeeded", 100, "Refresh complete.")
    assert (job.result["domains"], job.result["missing"]) == (1, 0)
    assert "Found 1 domains, 1 pools, 1 networks" in log_lines(job)
    assert host.facts["hostname"]
    assert host.checks == [
        {
            "name": "Hypervisor",
            "status": "warn",
            "detail": "This is libvirt's test driver: a simulated host.",
        }
    ]
    vm = VirtualMachine.objects.get(host=host)
    assert (vm.name, vm.state) == ("test", "running")
    assert list(host.pools.values_list("name", flat=True)) == ["default-pool"]
    assert list(host.networks.values_list("name", flat=True)) == ["default"]


def test_it_fails_the_refresh_of_an_unreachable_host_and_marks_it_down(db, admin_user):
    host = make_host("gone", uri=UNREACHABLE_URI)
    job = services.refresh_host(host, actor=Actor(admin_user))

    refresh_host_task(job.pk)

    job.refresh_from_db()
    host.refresh_from_db()
    assert job.state == "failed"
    assert job.message.startswith("gone is down: Cannot connect to qemu+tcp://127.0.0.1:1/system")
    assert host.state == "down"
    assert "Connection refused" in host.last_error


def test_it_fails_the_refresh_of_a_removed_host(db, admin_user):
    host = make_host("fake", uri=FAKE_URI)
    job = services.refresh_host(host, actor=Actor(admin_user))
    services.delete_host(host, actor=Actor(admin_user))

    refresh_host_task(job.pk)

    job.refresh_from_db()
    assert (job.state, job.message) == ("failed", "The host of this job was removed.")


@pytest.mark.sqlite
def test_it_scrubs_the_secrets_old_create_jobs_kept_in_their_result(transactional_db):
    """Create jobs from before Job.secrets: a finished one loses its user-data and
    kickstart; one still queued keeps them, as its secrets, for its task."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("panel", "0004_job_task")]
    after = [("panel", "0006_scrub_secrets_from_job_results")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    OldJob = executor.loader.project_state(before).apps.get_model("panel", "Job")
    install = {"method": "cloud-image", "user_data": "#cloud-config\npasswd: $6$x\n"}
    done = OldJob.objects.create(
        kind="vm.create", state="succeeded", target="vm:a", result={"install": dict(install)}
    )
    waiting = OldJob.objects.create(
        kind="vm.create", state="queued", target="vm:b", result={"install": dict(install)}
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)

    Job = executor.loader.project_state(after).apps.get_model("panel", "Job")
    done, waiting = Job.objects.get(pk=done.pk), Job.objects.get(pk=waiting.pk)
    assert done.result == waiting.result == {"install": {"method": "cloud-image"}}
    assert done.secrets == {}
    assert waiting.secrets == {"user_data": "#cloud-config\npasswd: $6$x\n"}
    latest = MigrationExecutor(connection)  # the schema as the next test expects
    latest.migrate(latest.loader.graph.leaf_nodes())
