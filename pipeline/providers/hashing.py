"""sha256 of a model file, read in 1 MiB blocks: every weight file we load (GGUF, ONNX) is pinned by it.

``memo_sha256`` keeps the digest of a file across processes while the file is provably the same one
(path, size, mtime, inode and ctime, which any write to its bytes changes): hashing the two ONNX
models a query loads cost ~60 ms of CPU in every new query process (issue 26), for files that never
change between installs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def memo_sha256(path: Path, memo_path: Path) -> str:
    """``sha256_of(path)``, read from ``memo_path`` (a JSON file) when the file is unchanged since it was
    hashed, else hashed and recorded there (a memo that cannot be written only costs a re-hash)."""
    st = path.stat()
    key = str(path.resolve())
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    seen = memo.get(key) if isinstance(memo, dict) else None
    if isinstance(seen, dict) and seen.get("stat") == stamp and isinstance(seen.get("sha256"), str):
        return seen["sha256"]
    digest = sha256_of(path)
    memo = memo if isinstance(memo, dict) else {}
    memo[key] = {"stat": stamp, "sha256": digest}
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_name(f"{memo_path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(memo, indent=1), encoding="utf-8")
        tmp.replace(memo_path)
    except OSError as exc:
        logger.debug("cannot record the hash of %s in %s: %s", path, memo_path, exc)
    return digest
