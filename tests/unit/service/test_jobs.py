import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import StoreLocked
from pipeline.ingest.run import ProgressFn
from pipeline.models import IngestReport, IngestStats
from pipeline.service.jobs import JobRunner
from pipeline.service.schemas import IngestJob, JobState


def wait_final(runner: JobRunner, job_id: str) -> IngestJob:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = runner.get(job_id)
        assert job is not None
        if job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            return job
        time.sleep(0.01)
    raise AssertionError("job did not finish")


class TestJobRunner:
    def test_success_records_progress_and_report(self) -> None:
        def ingest(paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
            for p in paths:
                progress("file", {"path": str(p), "total": len(paths)})
                progress("done", {"path": str(p), "status": "added", "reason": ""})
            return IngestReport(store="s", stats=IngestStats(files_added=len(paths)))

        finished: list[str] = []
        runner = JobRunner(ingest, on_finish=lambda j: finished.append(j.state.value))
        try:
            job = runner.submit([Path("/a.pdf"), Path("/b.pdf")], prune=True)
            assert job.state in (JobState.QUEUED, JobState.RUNNING) and job.prune
            done = wait_final(runner, job.id)
        finally:
            runner.shutdown()
        assert done.state is JobState.SUCCEEDED and done.report is not None and done.report.stats.files_added == 2
        assert done.progress.files_total == 2 and done.progress.files_done == 2 and done.progress.current is None
        assert done.started and done.finished and finished == ["succeeded"]

    def test_jobs_run_at_low_priority_and_the_caller_does_not(self) -> None:
        import os

        seen: list[int] = []

        def ingest(paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return IngestReport(store="s", stats=IngestStats())

        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        runner = JobRunner(ingest)
        try:
            wait_final(runner, runner.submit([Path("/a.pdf")], prune=False).id)
        finally:
            runner.shutdown()
        assert seen and seen[0] >= max(before, 10)  # ingest and enrichment yield the CPU to queries
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before

    def test_pipeline_error_fails_the_job_with_its_message(self) -> None:
        def ingest(paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
            raise StoreLocked("another ingest is writing")

        runner = JobRunner(ingest)
        try:
            done = wait_final(runner, runner.submit([Path("/a.pdf")], prune=False).id)
        finally:
            runner.shutdown()
        assert done.state is JobState.FAILED and done.error == "StoreLocked: another ingest is writing"

    def test_shutdown_stops_the_running_job_and_cancels_queued_ones(self) -> None:
        started = threading.Event()

        def ingest(paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
            started.set()
            while True:  # a long ingest: reports progress per parent until told to stop
                progress("parent", {"path": "/a.pdf", "done": 1, "total": 9})
                time.sleep(0.01)

        runner = JobRunner(ingest)
        running = runner.submit([Path("/a.pdf")], prune=False)
        queued = runner.submit([Path("/b.pdf")], prune=False)
        assert started.wait(5)
        runner.shutdown()
        assert runner.get(running.id).state is JobState.CANCELLED  # type: ignore[union-attr]
        assert runner.get(queued.id).state is JobState.CANCELLED  # type: ignore[union-attr]

    def test_keeps_only_the_last_finished_jobs(self) -> None:
        runner = JobRunner(lambda paths, prune, progress: IngestReport(store="s", stats=IngestStats()), keep=2)
        try:
            ids = []
            for _ in range(4):
                ids.append(runner.submit([Path("/a.pdf")], prune=False).id)
                wait_final(runner, ids[-1])
        finally:
            runner.shutdown()
        assert runner.get(ids[0]) is None and runner.get(ids[-1]) is not None


class TestCancel:
    def test_cancel_a_queued_job_at_once_and_a_running_one_at_its_next_step(self) -> None:
        started = threading.Event()
        steps: list[int] = []

        def ingest(paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
            started.set()
            for i in range(1000):
                progress("parent", {"path": "/a.pdf", "done": i, "total": 1000})
                steps.append(i)
                time.sleep(0.01)
            return IngestReport(store="s", stats=IngestStats())

        runner = JobRunner(ingest, stop_timeout=5)
        try:
            running = runner.submit([Path("/a.pdf")], prune=False)
            queued = runner.submit([Path("/b.pdf")], prune=False)
            assert started.wait(5)
            gone = runner.cancel(queued.id)
            assert gone is not None and gone.state is JobState.CANCELLED and "DELETE" in (gone.error or "")
            asked = runner.cancel(running.id)
            assert asked is not None and asked.cancel_requested
            done = wait_final(runner, running.id)
        finally:
            runner.shutdown()
        assert done.state is JobState.CANCELLED and done.error == "cancelled by DELETE /jobs/{id}"
        assert len(steps) < 1000 and runner.cancel("f" * 32) is None

    def test_a_wedged_job_is_abandoned_and_the_queue_moves_on(self) -> None:
        wedge = threading.Event()  # e.g. a read that never returns and never reports progress

        def ingest(paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
            if paths[0].name == "wedged.pdf":
                wedge.wait(30)
            return IngestReport(store="s", stats=IngestStats(files_added=1))

        runner = JobRunner(ingest, stop_timeout=0.3)
        try:
            stuck = runner.submit([Path("/wedged.pdf")], prune=False)
            after = runner.submit([Path("/next.pdf")], prune=False)
            time.sleep(0.1)
            runner.cancel(stuck.id)
            abandoned = wait_final(runner, stuck.id)
            assert abandoned.state is JobState.CANCELLED and (abandoned.error or "").startswith("abandoned: cancelled by DELETE")
            assert wait_final(runner, after.id).state is JobState.SUCCEEDED  # the queue is not wedged
            wedge.set()  # the abandoned thread ends later: its job keeps the cancelled state
            time.sleep(0.1)
            assert runner.get(stuck.id).state is JobState.CANCELLED  # type: ignore[union-attr]
        finally:
            wedge.set()
            runner.shutdown()

    def test_shutdown_waits_at_most_the_grace_period(self) -> None:
        wedge = threading.Event()
        started = threading.Event()

        def ingest(paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
            started.set()
            wedge.wait(30)
            return IngestReport(store="s", stats=IngestStats())

        runner = JobRunner(ingest, stop_timeout=0.5)
        job = runner.submit([Path("/a.pdf")], prune=False)
        assert started.wait(5)
        began = time.monotonic()
        runner.shutdown()
        took = time.monotonic() - began
        wedge.set()
        assert took < 2, took
        final = runner.get(job.id)
        assert final is not None and final.state is JobState.CANCELLED and "did not stop within 0.5 s" in (final.error or "")
