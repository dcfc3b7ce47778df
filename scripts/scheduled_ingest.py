"""Entry point for cron / systemd timers: sync folders into the store, or hand the job to the service.

    scripts/scheduled_ingest.py /data/papers [/data/notes ...]

Without ``PIPELINE_SERVICE_URL`` it runs ``pipeline ingest --sync --enrich later`` (every document
searchable as soon as it is read), then, when ``ingest.enrich`` would enrich (``now``, or ``auto`` with
an LLM whose summaries help), ``pipeline enrich`` at low priority (nice 10). With it (the
service owns an embedded store, so a second process may not open it) it submits ``POST /ingest``
(bearer ``PIPELINE_API_TOKEN``), polls ``GET /jobs/{id}`` and mirrors the result as exit codes:
0 all good, 1 some files failed, 2 fatal. Logs go to stderr (and ``PIPELINE_LOG_FILE`` as JSON lines).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def via_service(url: str, paths: list[str]) -> int:
    import httpx

    token = os.environ.get("PIPELINE_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30) as client:
        try:
            r = client.post("/ingest", json={"paths": [str(Path(p).resolve()) for p in paths], "prune": True})
        except httpx.HTTPError as exc:
            print(f"error: service {url} unreachable: {exc}", file=sys.stderr)
            return 2
        if r.status_code >= 400:
            print(f"error: service refused the job ({r.status_code}): {r.text}", file=sys.stderr)
            return 2
        job = r.json()
        print(f"submitted ingest job {job['id']} to {url}", file=sys.stderr)
        while job["state"] in ("queued", "running"):
            time.sleep(2)
            job = client.get(f"/jobs/{job['id']}").json()
    if job["state"] != "succeeded":
        print(f"error: job {job['id']} {job['state']}: {job.get('error')}", file=sys.stderr)
        return 2
    stats = job["report"]["stats"]
    print(
        f"job {job['id']} done: added {stats['files_added']}, updated {stats['files_updated']}, "
        f"removed {stats['files_removed']}, failed {stats['files_failed']}, unchanged {stats['files_unchanged']}",
        file=sys.stderr,
    )
    return 1 if stats["files_failed"] else 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    url = os.environ.get("PIPELINE_SERVICE_URL")
    if url:
        return via_service(url, argv)
    log = ["--log-file", os.environ["PIPELINE_LOG_FILE"]] if os.environ.get("PIPELINE_LOG_FILE") else []
    code = subprocess.call([sys.executable, "-m", "pipeline", "ingest", "--sync", "--enrich", "later", *log, *argv])
    if code == 2 or not wants_enrichment():
        return code
    # Second phase apart and niced: searches never wait for it, and it resumes where a killed run stopped.
    enriched = subprocess.call([sys.executable, "-m", "pipeline", "enrich", *log], preexec_fn=lambda: os.nice(10))
    return 2 if enriched == 2 else code


def wants_enrichment() -> bool:
    """What ``ingest`` would do with the configured LLM and ``ingest.enrich`` (see ``enrich_during_ingest``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipeline.config import Settings
    from pipeline.ingest.run import enrich_during_ingest

    return enrich_during_ingest(Settings())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
