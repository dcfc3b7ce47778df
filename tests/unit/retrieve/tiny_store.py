"""A three-parent store on the real embedded engine and docstore, written in the stored formats ingest
writes (LlamaIndex's node JSON in payloads and docstore), with 4-number vectors chosen by hand so each
stage's expected ranking can be worked out on paper (no model weights: milliseconds to build).

Query vector ``Q = [1, 0, 0, 0]``; cosines with it:

====== ========= ============================ ====================================
parent reference  vector                       cosine
====== ========= ============================ ====================================
A      a1 (128)  [0.9, 0.1, 0, 0]             0.99388
A      a2 (256)  [0.6, 0.8, 0, 0]             0.6
B      b1 (128)  [0.95, 0, 0.3122, 0]         0.95000
C      c1 (128)  [0, 1, 0, 0]                 0
A      self      [0.5, 0.5, 0.5, 0.5]         0.5
B      self      [0.7, 0.7, 0, 0]             0.70711
C      self      [0.2, 0, 0.98, 0]            0.19990
====== ========= ============================ ====================================

Only C's text holds "zebra" (a BM25 hit on its self-reference); A and C are in ``a.pdf``, B in ``b.pdf``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from llama_index.core.schema import TextNode
from qdrant_client import models

from pipeline.config import Settings
from pipeline.models import RefKind
from pipeline.providers.encoder import OnnxEncoder
from pipeline.providers.sparse import VECTOR_NAME as SPARSE
from pipeline.providers.sparse import doc_vector
from pipeline.store import layout
from pipeline.store import qdrant as qstore
from pipeline.store.layout import Collection
from pipeline.store.state import open_parents

DIM = 4
MODEL = "tiny-test-model"
Q = [1.0, 0.0, 0.0, 0.0]
TEXTS = {
    "A": "AlexNet was trained on two GPUs for five days. It won the ImageNet challenge in 2012 by a wide margin.",
    "B": "Bitcoin mining uses a great deal of electricity. Miners compete to find a hash below a target.",
    "C": "The zebra migration crosses the Mara river each year. Crocodiles wait for the herds at the crossing.",
}
DOCS = {"A": "/docs/a.pdf", "B": "/docs/b.pdf", "C": "/docs/a.pdf"}
CHUNKS = [  # (parent, kind, ordinal, vector, text)
    ("A", RefKind.CHUNK_128, 0, [0.9, 0.1, 0.0, 0.0], "AlexNet was trained on two GPUs for five days."),
    ("A", RefKind.CHUNK_256, 0, [0.6, 0.8, 0.0, 0.0], "It won the ImageNet challenge in 2012 by a wide margin."),
    ("B", RefKind.CHUNK_128, 0, [0.95, 0.0, 0.3122, 0.0], "Bitcoin mining uses a great deal of electricity."),
    ("C", RefKind.CHUNK_128, 0, [0.0, 1.0, 0.0, 0.0], "The zebra migration crosses the Mara river each year."),
]
SELF = {"A": [0.5, 0.5, 0.5, 0.5], "B": [0.7, 0.7, 0.0, 0.0], "C": [0.2, 0.0, 0.98, 0.0]}


def cosine(v: list[float]) -> float:
    a, b = np.array(v), np.array(Q)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@dataclass
class Tiny:
    settings: Settings
    ids: dict[str, str]  # "A" → parent id
    refs: dict[str, str]  # "a1" / "A-self" → point id

    def encoder(self) -> OnnxEncoder:
        """The store's recorded model and dimension, never loaded (the tests pass query vectors)."""
        return OnnxEncoder(model_name=MODEL, dim=DIM)


def _payload(parent_id: str, kind: RefKind, text: str, doc: str) -> dict:
    meta = {layout.KIND: kind.value, layout.PARENT_ID: parent_id, layout.DOC_ID: doc, layout.FILE_NAME: Path(doc).name}
    node = {"id_": "", "metadata": meta, "text": text, "class_name": "IndexNode", "index_id": parent_id}
    return {**meta, layout.NODE_CONTENT: json.dumps(node), "_node_type": "IndexNode", "ref_doc_id": doc}


def build(folder: Path) -> Tiny:
    settings = Settings(store=folder, llm={"provider": "none"})
    ids = {name: layout.parent_id_for(DOCS[name], i, name) for i, name in enumerate(TEXTS)}
    parents = open_parents(settings)
    try:
        parents.put([
            TextNode(
                id_=ids[name], text=text, start_char_idx=100 * i,
                metadata={layout.DOC_ID: DOCS[name], layout.FILE_NAME: Path(DOCS[name]).name, layout.KIND: "parent",
                          layout.PARENT_ID: ids[name], layout.PAGES: [i + 1], layout.READABLE_ID: f"{Path(DOCS[name]).name}#p{i}"},
            )
            for i, (name, text) in enumerate(TEXTS.items())
        ])
        parents.put_page_offsets("/docs/a.pdf", [0, 50])
    finally:
        parents.close()
    client = qstore.open_client(settings)
    refs: dict[str, str] = {}
    try:
        names = qstore.ensure_collections(client, settings, MODEL, DIM)
        points = []
        for parent, kind, ordinal, vector, text in CHUNKS:
            pid = layout.ref_id_for(ids[parent], kind, ordinal)
            refs[f"{parent.lower()}{len([r for r in refs if r.startswith(parent.lower())]) + 1}"] = pid
            indices, values = doc_vector(text)
            points.append(models.PointStruct(id=pid, vector={"": vector, SPARSE: models.SparseVector(indices=indices, values=values)},
                                             payload=_payload(ids[parent], kind, text, DOCS[parent])))
        client.upsert(names[Collection.CHILDREN], points=points, wait=True)
        selfs = []
        for name, vector in SELF.items():
            pid = layout.ref_id_for(ids[name], RefKind.PARENT, 0)
            refs[f"{name}-self"] = pid
            indices, values = doc_vector(TEXTS[name])
            selfs.append(models.PointStruct(id=pid, vector={"": vector, SPARSE: models.SparseVector(indices=indices, values=values)},
                                            payload=_payload(ids[name], RefKind.PARENT, TEXTS[name], DOCS[name])))
        client.upsert(names[Collection.PARENTS], points=selfs, wait=True)
        qstore.flush(client)
    finally:
        client.close()
    return Tiny(settings, ids, refs)
