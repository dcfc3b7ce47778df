"""Keep an int8 model's embedding tables int8 in memory: dequantize the rows a Gather picks, not the table.

Why: the MiniLM wheel stores each weight as int8 plus a float32 scale, turned back into floats by a
``Cast`` and a ``Mul`` in the graph. onnxruntime folds those constants when it loads the model, so a
session holds every weight as float32: the 30,522 x 384 word-embedding table alone is 47 MB where the
int8 table is 11.7 MB. Where such a table only feeds ``Gather`` and its scale is per row (or one
scalar), gathering the int8 rows and their scales first and dequantizing only those gives the same
floats: the same ``Cast`` and the same float32 ``Mul`` on fewer elements, so the outputs are
bit-identical (checked by a test). Measured on MiniLM (scratch, 1 thread): the session holds 64 MB
instead of 98, loads in 0.11-0.15 s instead of 0.17-0.22, and a query takes the same 11-13 ms. The
weights that feed ``MatMul`` stay as they are: a fused 8-bit ``MatMulNBits`` held 30 MB less again
but made a query 2.3x slower.

The rewrite needs the ``onnx`` package, whose import alone costs 0.6 s and 17 MB, so it runs once per
model file and the result is cached (``prepared``) under ``PIPELINE_MODEL_CACHE`` (default
``~/.cache/pipeline/models``), pinned by its own sha256. A process that cannot build or write it uses
the model as shipped, with a warning: slower to load and larger, the same vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from pipeline.providers.hashing import memo_sha256

logger = logging.getLogger(__name__)

VERSION = 1  # bump when ``rewrite`` changes what it writes: old cached files are then not used
CACHE_ENV = "PIPELINE_MODEL_CACHE"


def cache_dir() -> Path:
    # The environment, not ``Settings``, on purpose (issue 24): the model cache belongs to the machine
    # and user, like HF_HOME, not to a store's configuration; `scripts/setup.sh` fills it before any
    # settings exist (`python -m pipeline.providers.embeddings`), and `settings_check.NOT_SETTINGS`
    # names it so it is not taken for an unknown setting.
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pipeline" / "models")


def rewrite(model: Path) -> bytes | None:
    """The model with every dequantize-then-Gather table turned into Gather-then-dequantize, as bytes;
    None if the model has no such table (nothing to gain)."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(model))
    graph = m.graph
    inits = {i.name: i for i in graph.initializer}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    dropped: set[int] = set()
    added: list[onnx.NodeProto] = []
    for cast in graph.node:
        if cast.op_type != "Cast" or cast.input[0] not in inits or inits[cast.input[0]].data_type != TensorProto.INT8:
            continue
        muls = users.get(cast.output[0], [])
        if len(muls) != 1 or muls[0].op_type != "Mul":
            continue
        mul = muls[0]
        scale = next((x for x in mul.input if x != cast.output[0]), "")
        table = inits[cast.input[0]]
        if scale not in inits or len(table.dims) != 2:
            continue
        scale_dims = list(inits[scale].dims)
        per_row = scale_dims == [table.dims[0], 1]
        if not (per_row or scale_dims in ([], [1], [1, 1])):
            continue
        gathers = users.get(mul.output[0], [])
        if not gathers or any(
            g.op_type != "Gather" or g.input[0] != mul.output[0] or any(a.name == "axis" and a.i != 0 for a in g.attribute)
            for g in gathers
        ):
            continue
        for g in gathers:
            out, ids = g.output[0], g.input[1]
            rows_scale = f"{out}__scale" if per_row else scale
            added += [
                helper.make_node("Gather", [cast.input[0], ids], [f"{out}__q"], name=f"{g.name}__q"),
                helper.make_node("Cast", [f"{out}__q"], [f"{out}__f"], to=TensorProto.FLOAT, name=f"{g.name}__cast"),
            ]
            if per_row:
                added.append(helper.make_node("Gather", [scale, ids], [rows_scale], name=f"{g.name}__scale"))
            added.append(helper.make_node("Mul", [f"{out}__f", rows_scale], [out], name=f"{g.name}__mul"))
            dropped.add(id(g))
        dropped.update({id(cast), id(mul)})
    if not added:
        return None
    nodes = [n for n in graph.node if id(n) not in dropped] + added
    del graph.node[:]
    graph.node.extend(_topological(nodes, {i.name for i in graph.input} | set(inits)))
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _topological(nodes: list, known: set[str]) -> list:
    """``nodes`` in an order where each runs after what it reads (onnxruntime requires it)."""
    done, pending = set(known), list(nodes)
    ordered = []
    while pending:
        later = []
        for node in pending:
            if all(not name or name in done for name in node.input):
                ordered.append(node)
                done.update(node.output)
            else:
                later.append(node)
        if len(later) == len(pending):
            raise ValueError(f"graph has a cycle or an unknown input at {later[0].name}")
        pending = later
    return ordered


def prepared(model: Path, digest: str) -> Path:
    """The cached rewrite of ``model`` (whose verified sha256 is ``digest``), built on first use; the
    model itself where there is nothing to rewrite, or the rewrite cannot be built or kept."""
    folder = cache_dir()
    target = folder / f"{model.stem}-{digest[:16]}-g{VERSION}.onnx"
    pin = target.with_suffix(".sha256")
    none = target.with_suffix(".none")
    try:
        if none.is_file():
            return model
        if target.is_file() and pin.is_file() and memo_sha256(target, folder / "verified.json") == pin.read_text(encoding="ascii").strip():
            return target
    except OSError:
        pass
    try:
        data = rewrite(model)
        folder.mkdir(parents=True, exist_ok=True)
        if data is None:
            none.touch()
            return model
        _write(pin, hashlib.sha256(data).hexdigest().encode("ascii"))
        _write(target, data)
    except Exception as exc:  # no onnx package, a read-only or full cache, a graph it cannot rewrite
        logger.warning("%s: using the model as shipped (its weights held as float32, ~35 MB more): %s", model, exc)
        return model
    logger.info("%s: rewrote its int8 embedding tables to stay int8 in memory (%s)", model, target)
    return target


def _write(path: Path, data: bytes) -> None:
    """Atomic: another process sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)

