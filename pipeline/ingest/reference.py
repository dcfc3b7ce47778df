"""Parent → ``IndexNode`` references that point back to it: child chunks of each size and the parent itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, IndexNode, NodeRelationship, RelatedNodeInfo, TextNode, TransformComponent

from pipeline.models import RefKind
from pipeline.store import layout

CARRIED_KEYS = (layout.DOC_ID, layout.PAGES, layout.READABLE_ID, layout.FILE_NAME)


def is_parent(node: BaseNode) -> bool:
    return not isinstance(node, IndexNode) and node.metadata.get(layout.KIND) == "parent"


def make_ref(parent: BaseNode, kind: RefKind, ordinal: int, text: str) -> IndexNode:
    """A reference node: its own text, its parent's id as ``index_id``, and no embedded metadata."""
    meta = {k: parent.metadata[k] for k in CARRIED_KEYS if k in parent.metadata}
    meta[layout.KIND] = kind.value
    meta[layout.PARENT_ID] = parent.node_id
    ref = IndexNode(
        id_=layout.ref_id_for(parent.node_id, kind, ordinal),
        text=text,
        index_id=parent.node_id,
        metadata=meta,
        # Ids and pages must not shape the vector; the text alone does.
        excluded_embed_metadata_keys=list(meta),
        excluded_llm_metadata_keys=list(meta),
    )
    # SOURCE = the document, so Qdrant's doc_id payload lets us delete a document's refs at once.
    source = parent.relationships.get(NodeRelationship.SOURCE)
    if isinstance(source, RelatedNodeInfo):
        ref.relationships[NodeRelationship.SOURCE] = source
    return ref


class ReferenceBuilder(TransformComponent):
    """Add child-chunk references of every size and one self-reference per parent; parents pass through.

    Example:
        nodes = ReferenceBuilder(chunk_sizes=[128, 256, 512], chunk_overlap=20)(parents)
    """

    chunk_sizes: list[int] = [128, 256, 512]
    chunk_overlap: int = 20

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[BaseNode]:
        out: list[BaseNode] = []
        for parent in nodes:
            out.append(parent)
            if not is_parent(parent):
                continue
            plain = TextNode(text=parent.get_content())
            for size in self.chunk_sizes:
                kind = RefKind(f"chunk-{size}")
                splitter = SentenceSplitter(chunk_size=size, chunk_overlap=self.chunk_overlap)
                for i, chunk in enumerate(splitter.get_nodes_from_documents([plain])):
                    out.append(make_ref(parent, kind, i, chunk.get_content()))
            out.append(make_ref(parent, RefKind.PARENT, 0, parent.get_content()))
        return out
