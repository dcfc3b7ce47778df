"""Ingest jobs of the service: one at a time in a worker thread, against the store the service holds open.

In embedded mode only one process may open ``<store>/qdrant``, so ``POST /ingest`` is how scheduled
ingestion reaches a store the service owns; the job writes through the service's own client, and
queries see the new documents as soon as each one is written.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.ingest.run import ProgressFn
from pipeline.models import IngestReport
from pipeline.service.schemas import IngestJob, JobState

logger = logging.getLogger(__name__)

# Runs one ingest: (paths, prune, progress) -> report. The service passes a function that builds an
# Ingestor on its open client; tests pass a fake.
IngestFn = Callable[[Sequence[Path], bool, ProgressFn], IngestReport]
FINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobCancelled(Exception):
    """Raised inside a running job (from its progress callback) when the service shuts down."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class JobRunner:
    """Queue of ingest jobs, run in order by one worker thread; keeps the last ``keep`` jobs.

    Shutdown cancels queued jobs and stops a running one at its next file or parent; a document
    whose parents were not all processed is not written, so the store holds whole documents only.

    Example:
        runner = JobRunner(run_ingest)
        job = runner.submit([Path("/data/papers")], prune=False)
        runner.get(job.id).state  # queued → running → succeeded
    """

    def __init__(self, ingest: IngestFn, keep: int = 100, on_finish: Callable[[IngestJob], None] | None = None) -> None:
        self.ingest = ingest
        self.keep = keep
        self.on_finish = on_finish
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-job")

    def submit(self, paths: Sequence[Path], prune: bool) -> IngestJob:
        job = IngestJob(id=uuid.uuid4().hex, paths=[str(p) for p in paths], prune=prune, created=_now())
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                oldest = next(iter(self._jobs.values()))
                if oldest.state not in FINAL:
                    break
                self._jobs.popitem(last=False)
            queued = job.model_copy(deep=True)  # as accepted, whatever the worker does next
        logger.info("ingest job %s queued: %s", job.id, ", ".join(job.paths), extra={"job_id": job.id})
        # The job's log lines carry the id of the request that started it (a context variable).
        self._executor.submit(contextvars.copy_context().run, self._run, job.id)
        return queued

    def get(self, job_id: str) -> IngestJob | None:
        """A snapshot of the job (a copy: the worker keeps updating the original)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return job.model_copy(deep=True) if job else None

    def _update(self, job_id: str, **fields: object) -> IngestJob:
        with self._lock:
            job = self._jobs[job_id]
            for key, value in fields.items():
                setattr(job, key, value)
            return job

    def _progress(self, job_id: str) -> ProgressFn:
        def progress(event: str, detail: dict) -> None:
            if self._stopping.is_set():
                raise JobCancelled("the service is shutting down")
            with self._lock:
                prog = self._jobs[job_id].progress
                if event == "file":
                    prog.files_total = detail.get("total", prog.files_total)
                    prog.current = detail.get("path")
                elif event == "done":
                    prog.files_done += 1
                    prog.current = None

        return progress

    def _run(self, job_id: str) -> None:
        if self._stopping.is_set():
            self._finish(job_id, JobState.CANCELLED, error="the service shut down before the job started")
            return
        job = self._update(job_id, state=JobState.RUNNING, started=_now())
        logger.info("ingest job %s running", job_id, extra={"job_id": job_id})
        try:
            report = self.ingest([Path(p) for p in job.paths], job.prune, self._progress(job_id))
        except JobCancelled as exc:
            self._finish(job_id, JobState.CANCELLED, error=str(exc))
        except PipelineError as exc:
            self._finish(job_id, JobState.FAILED, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug must not kill the worker thread or hide the job's end
            logger.exception("ingest job %s crashed", job_id, extra={"job_id": job_id})
            self._finish(job_id, JobState.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
        else:
            self._finish(job_id, JobState.SUCCEEDED, report=report)

    def _finish(self, job_id: str, state: JobState, report: IngestReport | None = None, error: str | None = None) -> None:
        job = self._update(job_id, state=state, finished=_now(), report=report, error=error)
        log = logger.warning if state is not JobState.SUCCEEDED else logger.info
        log("ingest job %s %s%s", job_id, state.value, f": {error}" if error else "", extra={"job_id": job_id})
        if self.on_finish is not None:
            self.on_finish(job)

    def shutdown(self) -> None:
        """Cancel queued jobs, stop the running one at its next file or parent, and wait for it."""
        self._stopping.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            queued = [j.id for j in self._jobs.values() if j.state is JobState.QUEUED]
        for job_id in queued:  # their futures were cancelled before they ran
            self._finish(job_id, JobState.CANCELLED, error="the service shut down before the job started")
