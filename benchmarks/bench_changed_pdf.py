"""Cost of one changed PDF: ingest a paper, drop its last page (pypdf), ingest again; write both stats.

    python benchmarks/bench_changed_pdf.py ../shared/corpus/papers/1910.01108v4_distilbert.pdf --out benchmarks/results/closing/changed_pdf.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pypdf import PdfReader, PdfWriter


def ingest(pdf: Path, store: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "pipeline", "ingest", str(pdf), "--store", str(store), "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["stats"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pdf", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="changed-pdf-"))
    try:
        pdf = work / args.pdf.name
        shutil.copy(args.pdf, pdf)
        first = ingest(pdf, work / "store")
        reader = PdfReader(pdf)
        writer = PdfWriter()
        for page in reader.pages[:-1]:
            writer.add_page(page)
        with pdf.open("wb") as f:
            writer.write(f)
        second = ingest(pdf, work / "store")
        result = {
            "pdf": args.pdf.name,
            "change": f"last page removed ({len(reader.pages)} -> {len(reader.pages) - 1} pages)",
            "first_ingest": first,
            "after_change": second,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(["python", "benchmarks/bench_changed_pdf.py", *sys.argv[1:]]),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(json.dumps({k: result[k] for k in ("change",)} | {
            "first": {k: first[k] for k in ("parents", "llm_calls", "embedded_texts", "seconds")},
            "changed": {k: second[k] for k in ("parents", "parents_rebuilt", "parents_reused", "llm_calls", "embedded_texts", "seconds")},
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
