"""Ingest jobs of the service: one at a time in a worker thread, against the store the service holds open.

In embedded mode only one process may open ``<store>/qdrant``, so ``POST /ingest`` is how scheduled
ingestion reaches a store the service owns; the job writes through the service's own client, and
queries see the new documents as soon as each one is written.

A job must never wedge the service: it can be cancelled (``DELETE /jobs/{id}``), and a job that does
not stop within ``stop_timeout`` seconds of being cancelled (or of shutdown) is *abandoned*: marked
cancelled, its thread left to end on its own (a daemon thread, so the process can still exit), and the
next queued job starts on a new worker thread. The store stays consistent either way: a document is
written in one transaction after all its parents are processed, and the ingest lock keeps an abandoned
job and the next one from writing at the same time (the next one fails with ``StoreLocked`` until the
abandoned one has ended).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
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
    """Raised inside a running job (from its progress callback) when it is cancelled or the service stops."""


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (lone surrogates: how Python reads a name that
    is not UTF-8) shown as ``\\xNN``: a job's JSON must be UTF-8, and one such name once made every
    ``GET /jobs/{id}`` of its job a 500."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        if "\udc80" <= ch <= "\udcff":  # surrogateescape: the original byte
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def printable_report(report: IngestReport) -> IngestReport:
    """The report with every file's path, doc_id and reason ``printable``."""
    files = [f.model_copy(update={k: printable(getattr(f, k)) for k in ("path", "doc_id", "reason")}) for f in report.files]
    return report.model_copy(update={"files": files})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


JOB_NICE = 10


def lower_priority(nice: int = JOB_NICE) -> int | None:
    """Run the calling thread (only it) at ``nice`` on Linux, so ingest and enrichment jobs (embedding,
    LLM summaries) yield the CPU to queries; returns the new niceness, or None where it cannot be set.

    Linux schedules threads as tasks, and ``setpriority`` with a thread id affects that thread alone.
    """
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:  # never raise priority (a service started under `nice 15` stays there)
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        return None


class JobRunner:
    """Queue of ingest jobs, run in order by one worker thread at a time; keeps the last ``keep`` jobs.

    Cancelling (``cancel``) or shutting down stops a running job at its next file or parent; a
    document whose parents were not all processed is not written, so the store holds whole documents
    only. A job that does not stop within ``stop_timeout`` seconds is abandoned (see the module doc).

    Example:
        runner = JobRunner(run_ingest)
        job = runner.submit([Path("/data/papers")], prune=False)
        runner.get(job.id).state  # queued → running → succeeded
        runner.cancel(job.id)     # → cancelled (at its next file or parent)
    """

    def __init__(
        self,
        ingest: IngestFn,
        keep: int = 100,
        on_finish: Callable[[IngestJob], None] | None = None,
        stop_timeout: float = 10.0,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.ingest = ingest
        self.redact = redact  # job errors are read by clients: the service passes one that removes its own paths
        self.keep = keep
        self.on_finish = on_finish
        self.stop_timeout = stop_timeout
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._queue: deque[str] = deque()
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._running: str | None = None

    # --- public API
    def submit(self, paths: Sequence[Path], prune: bool) -> IngestJob:
        job = IngestJob(id=uuid.uuid4().hex, paths=[str(p) for p in paths], prune=prune, created=_now())
        with self._lock:
            self._jobs[job.id] = job
            self._cancel[job.id] = threading.Event()
            self._queue.append(job.id)
            self._trim()
            queued = job.model_copy(deep=True)  # as accepted, whatever the worker does next
            if self._worker is None:
                self._start_worker()
        logger.info("ingest job %s queued: %s", job.id, ", ".join(job.paths), extra={"job_id": job.id})
        return queued

    def get(self, job_id: str) -> IngestJob | None:
        """A snapshot of the job (a copy: the worker keeps updating the original)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return job.model_copy(deep=True) if job else None

    def cancel(self, job_id: str, reason: str = "cancelled by DELETE /jobs/{id}") -> IngestJob | None:
        """Cancel a job: a queued one at once, a running one at its next file or parent (abandoned after
        ``stop_timeout`` seconds). A finished job is returned unchanged; an unknown id gives None."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.state is JobState.QUEUED:
                self._queue.remove(job_id)
        if job.state is JobState.QUEUED:
            self._finish(job_id, JobState.CANCELLED, error=reason)
        elif job.state is JobState.RUNNING:
            with self._lock:
                job.cancel_requested = True
            self._cancel[job_id].set()
            logger.info("ingest job %s: cancel requested", job_id, extra={"job_id": job_id})
            threading.Thread(target=self._abandon_after, args=(job_id, self.stop_timeout, reason), name="job-watchdog", daemon=True).start()
        return self.get(job_id)

    def shutdown(self, timeout: float | None = None) -> None:
        """Cancel queued jobs, stop the running one at its next file or parent, and wait for it at most
        ``timeout`` seconds (default ``stop_timeout``); then abandon it."""
        timeout = self.stop_timeout if timeout is None else timeout
        self._stopping.set()
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
            running, worker = self._running, self._worker
        for job_id in queued:
            self._finish(job_id, JobState.CANCELLED, error="the service shut down before the job started")
        if running is not None:
            self._cancel[running].set()
        if worker is not None:
            worker.join(timeout)
            if worker.is_alive() and running is not None:
                self._abandon(running, f"the service shut down and the job did not stop within {timeout:g} s")

    # --- worker
    def _start_worker(self) -> None:
        """Start a worker thread for the queue (called with the lock held)."""
        worker = threading.Thread(target=contextvars.copy_context().run, args=(self._work,), name="ingest-job", daemon=True)
        self._worker = worker
        worker.start()

    def _work(self) -> None:
        me = threading.current_thread()
        lower_priority()
        while True:
            with self._lock:
                if self._worker is not me:  # this worker's job was abandoned; a new worker owns the queue
                    return
                if not self._queue or self._stopping.is_set():
                    self._worker = None
                    self._running = None
                    return
                job_id = self._queue.popleft()
                self._running = job_id
            self._run(job_id)
            with self._lock:
                if self._worker is not me:
                    return
                self._running = None

    def _progress(self, job_id: str) -> ProgressFn:
        cancel = self._cancel[job_id]

        def progress(event: str, detail: dict) -> None:
            if cancel.is_set():
                raise JobCancelled("the service is shutting down" if self._stopping.is_set() else "cancelled by DELETE /jobs/{id}")
            with self._lock:
                prog = self._jobs[job_id].progress
                if event == "file":
                    prog.files_total = detail.get("total", prog.files_total)
                    prog.current = printable(str(detail["path"])) if detail.get("path") is not None else None
                elif event == "done":
                    prog.files_done += 1
                    prog.current = None

        return progress

    def _run(self, job_id: str) -> None:
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
            # The exception's text is for the log: it can hold anything (server paths, file contents).
            self._finish(job_id, JobState.FAILED, error=f"internal error ({type(exc).__name__}): see the service log for job {job_id}")
        else:
            self._finish(job_id, JobState.SUCCEEDED, report=report)

    def _abandon_after(self, job_id: str, timeout: float, reason: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is None or job.state in FINAL:
                return
            time.sleep(0.05)
        self._abandon(job_id, f"{reason}; the job did not stop within {timeout:g} s")

    def _abandon(self, job_id: str, reason: str) -> None:
        """Give up on a running job: mark it cancelled and hand the queue to a new worker thread."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINAL:
                return
            if self._running == job_id:
                self._running = None
                self._worker = None
                if self._queue and not self._stopping.is_set():
                    self._start_worker()
        self._finish(
            job_id,
            JobState.CANCELLED,
            error=f"abandoned: {reason}. Documents finished before are kept (the ledger records them); "
            "POST /ingest the same paths again to finish",
        )

    # --- bookkeeping
    def _trim(self) -> None:
        """Forget the oldest finished jobs beyond ``keep`` (called with the lock held)."""
        while len(self._jobs) > self.keep:
            oldest_id, oldest = next(iter(self._jobs.items()))
            if oldest.state not in FINAL:
                break
            self._jobs.popitem(last=False)
            self._cancel.pop(oldest_id, None)

    def _update(self, job_id: str, **fields: object) -> IngestJob:
        with self._lock:
            job = self._jobs[job_id]
            for key, value in fields.items():
                setattr(job, key, value)
            return job

    def _finish(self, job_id: str, state: JobState, report: IngestReport | None = None, error: str | None = None) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINAL:  # e.g. an abandoned job whose thread ended later
                return
            job.state, job.finished, job.error = state, _now(), printable(self.redact(error)) if error else error
            job.report = printable_report(report) if report is not None else None
            job = job.model_copy(deep=True)
        log = logger.warning if state is not JobState.SUCCEEDED else logger.info
        log("ingest job %s %s%s", job_id, state.value, f": {error}" if error else "", extra={"job_id": job_id})
        if self.on_finish is not None:
            self.on_finish(job)
