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
