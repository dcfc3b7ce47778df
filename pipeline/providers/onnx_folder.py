"""Models the user brings: a folder holding an ONNX model and its ``tokenizer.json``.

Why: the shipped models are the strongest obtainable offline here (docs: "Bring your own model"),
but a user may hold stronger weights on disk; pointing ``embed.model`` or ``retrieval.rerank_model``
at their folder uses them without code. Why the sha256 in the name: the store records the name of
the model its vectors came from (``store/qdrant.py``, ``META_MODEL``), so naming a folder model by the
sha256 of its weights, plus a digest of its tokenizer and of the settings that shape its vectors,
makes a changed file a different model, refused with ``ModelMismatch`` naming both, instead of
vectors from two spaces silently sharing one collection.

Everything here is checked before the weights load (the file names, the ONNX interface read from the
graph without its tensors), so a wrong folder is a ``ConfigError`` naming it and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.providers import onnx

NAME_PREFIX = "onnx-folder:"
TOKENIZER = "tokenizer.json"
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_MAX_LENGTH = 512


def is_folder_setting(value: str) -> bool:
    """Whether a model setting names a folder (a path) rather than a built-in model's key."""
    v = value.strip()
    return bool(v) and ("/" in v or "\\" in v or v.startswith(("~", ".")) or Path(v).is_dir())


@dataclass(frozen=True)
class FolderModel:
    """A folder model's files, their sha256 and the ONNX interface (read without the weights)."""

    folder: Path
    model: Path
    tokenizer: Path
    sha256: str
    tokenizer_sha256: str
    inputs: tuple[str, ...]
    output_shape: tuple[int | str | None, ...]  # of the first output; str for a symbolic dimension

    def verify(self, setting: str) -> None:
        """Refuse a file that changed since its sha256 was taken (the name the store checked holds it)."""
        advice = f"it changed after {setting} was read; restart to use the new file (a store built with the old one refuses it)"
        onnx.verify(self.model, self.sha256, advice=advice)
        onnx.verify(self.tokenizer, self.tokenizer_sha256, advice=advice)


def _model_file(folder: Path, setting: str) -> Path:
    """``model.onnx``, else the folder's only ``*.onnx``, else ``onnx/model.onnx`` (a Hugging Face export)."""
    if (folder / "model.onnx").is_file():
        return folder / "model.onnx"
    found = sorted(p for p in folder.glob("*.onnx") if p.is_file())
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConfigError(
            f"{setting}: {folder} holds {len(found)} ONNX files ({', '.join(p.name for p in found)}) and no model.onnx: "
            "keep one, or name the one to use model.onnx"
        )
    if (folder / "onnx" / "model.onnx").is_file():
        return folder / "onnx" / "model.onnx"
    raise ConfigError(f"{setting}: {folder} holds no ONNX model (model.onnx or one *.onnx file)")


def _interface(model: Path, setting: str) -> tuple[tuple[str, ...], tuple[int | str | None, ...]]:
    """The graph's feed names and its first output's shape, read without loading the tensors."""
    import onnx as onnx_lib

    try:
        graph = onnx_lib.load(str(model), load_external_data=False).graph
    except Exception as exc:  # not protobuf, truncated, ...
        raise ConfigError(f"{setting}: {model} is not a readable ONNX model: {exc}") from exc
    weights = {i.name for i in graph.initializer}
    inputs = tuple(i.name for i in graph.input if i.name not in weights)
    if "input_ids" not in inputs:
        raise ConfigError(f"{setting}: {model} takes no input_ids (its inputs: {', '.join(inputs) or 'none'}); a text model is needed")
    unknown = [i for i in inputs if i not in KNOWN_INPUTS]
    if unknown:
        raise ConfigError(f"{setting}: {model} needs inputs this pipeline cannot feed: {', '.join(unknown)} (it feeds {', '.join(KNOWN_INPUTS)})")
    if not graph.output:
        raise ConfigError(f"{setting}: {model} has no output")
    dims = graph.output[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)
    return inputs, shape


def open_folder(value: str, setting: str) -> FolderModel:
    """Resolve a folder setting, find its files, hash them and read the model's interface.

    Raises:
        ConfigError: no such folder, no ONNX file or several, no ``tokenizer.json``, not ONNX, or
            inputs this pipeline cannot feed; each names the folder.
    """
    folder = Path(value.strip()).expanduser().resolve()
    if not folder.exists():
        raise ConfigError(f"{setting}: no folder at {folder}")
    if not folder.is_dir():
        raise ConfigError(f"{setting}: {folder} is a file; give the folder holding the ONNX model and its {TOKENIZER}")
    model = _model_file(folder, setting)
    tokenizer = folder / TOKENIZER
    if not tokenizer.is_file():
        raise ConfigError(f"{setting}: {folder} has no {TOKENIZER} (the model's tokenizer, saved by Hugging Face tokenizers/transformers)")
    inputs, shape = _interface(model, setting)
    return FolderModel(folder, model, tokenizer, onnx.fingerprint(model), onnx.fingerprint(tokenizer), inputs, shape)


def embedding_dim(fm: FolderModel, setting: str) -> tuple[int, bool]:
    """(vector size, whether the output is already pooled) of an embedding model's first output.

    Token states ``[batch, sequence, dim]`` are pooled here; ``[batch, dim]`` is a sentence embedding
    used as it is. A last dimension left symbolic is taken from ``config.json``'s ``hidden_size``
    (and checked against a real output when the model loads).
    """
    shape = fm.output_shape
    if len(shape) == 2 and shape[-1] == 1:
        raise ConfigError(
            f"{setting}: {fm.model} gives one number per input (shape {list(shape)}): a cross-encoder, not an "
            "embedding model; use it as retrieval.rerank_model"
        )
    if len(shape) not in (2, 3):
        raise ConfigError(
            f"{setting}: {fm.model}'s first output has shape {list(shape)}, not an embedding "
            "([batch, sequence, dim] token states or a [batch, dim] sentence embedding)"
        )
    dim = shape[-1]
    if not isinstance(dim, int) or dim <= 0:
        hidden = _json(fm.folder / "config.json").get("hidden_size")
        if not isinstance(hidden, int) or hidden <= 0:
            raise ConfigError(f"{setting}: {fm.model}'s output size is not fixed ({dim!r}) and {fm.folder} has no config.json with hidden_size")
        dim = hidden
    return dim, len(shape) == 2


def check_cross_encoder(fm: FolderModel, setting: str) -> None:
    """A cross-encoder gives one logit per (query, passage) pair: ``[batch, 1]`` or ``[batch]``."""
    shape = fm.output_shape
    if len(shape) == 1 or (len(shape) == 2 and (shape[-1] == 1 or not isinstance(shape[-1], int))):
        return  # a symbolic width is taken on trust: ``score`` reads the first logit of each row
    kind = "token states: an embedding model (use it as embed.model)" if len(shape) == 3 else "not one logit per pair"
    raise ConfigError(f"{setting}: {fm.model}'s first output has shape {list(shape)}, {kind}; a cross-encoder gives [batch, 1]")


def max_length(folder: Path) -> int:
    """Word pieces per window the model was trained for: sentence-transformers' ``max_seq_length``,
    else ``config.json``'s ``max_position_embeddings``, else ``tokenizer_config.json``'s
    ``model_max_length`` (when it is a real limit), else 512."""
    for file, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("config.json", "max_position_embeddings"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        value = _json(folder / file).get(key)
        if isinstance(value, int) and 8 <= value <= 100_000:
            return value
    return DEFAULT_MAX_LENGTH


def model_name(fm: FolderModel, **shaping: Any) -> str:
    """The name a store records: ``onnx-folder:<folder>@<sha256 of the weights, 12 hex>+<8 hex>``.

    The second digest covers the tokenizer's sha256 and ``shaping`` (pooling, prefixes, window): any
    of them changes the vectors, so each makes another model as far as a store can tell.
    """
    extra = json.dumps({"tokenizer": fm.tokenizer_sha256, **shaping}, sort_keys=True)
    return f"{NAME_PREFIX}{fm.folder.name}@{fm.sha256[:12]}+{hashlib.sha256(extra.encode()).hexdigest()[:8]}"


def special_counts(tokenizer: Any) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after a text ([CLS]/[SEP]: 1, 1).

    Windows of a long text keep the same frame; a tokenizer that adds none (or two in front) is
    windowed right instead of losing real tokens."""
    bare = tokenizer.encode("probe text", add_special_tokens=False).ids
    full = tokenizer.encode("probe text").ids
    if not bare:
        return (1, 1) if len(full) >= 2 else (0, 0)
    for head in range(len(full) - len(bare) + 1):
        if full[head : head + len(bare)] == bare:
            return head, len(full) - head - len(bare)
    return 1, 1


def _json(path: Path) -> dict[str, Any]:
    try:
        data = onnx.read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
