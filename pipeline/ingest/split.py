"""Document → 1024-token parent nodes with content-addressed UUIDv5 ids and the pages they cover."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from typing import Any

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, NodeRelationship, TextNode, TransformComponent

from pipeline.ingest.load import PAGE_OFFSETS
from pipeline.store import layout

PARENT_META_EXCLUDED = [*layout.HIDDEN_KEYS, PAGE_OFFSETS]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class ParentSplitter(TransformComponent):
    """Split documents into parents; a parent's id depends on its document, ordinal and text.

    Because the id includes the text hash, an edited parent gets a new id: its new references can be
    written beside the old ones and the old ones removed afterwards, never leaving a reference that
    points at changed text.

    Example:
        parents = ParentSplitter(chunk_size=1024)([document])
    """

    chunk_size: int = 1024
    chunk_overlap: int = 200

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[BaseNode]:
        splitter = SentenceSplitter(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)
        out: list[BaseNode] = []
        for doc in nodes:
            offsets: list[int] = doc.metadata.get(PAGE_OFFSETS) or [0]
            doc_id = doc.metadata.get(layout.DOC_ID, doc.node_id)
            for ordinal, chunk in enumerate(splitter.get_nodes_from_documents([doc])):
                text = chunk.get_content()
                start = chunk.start_char_idx if chunk.start_char_idx is not None else 0
                end = chunk.end_char_idx if chunk.end_char_idx is not None else start + len(text)
                first = bisect.bisect_right(offsets, start)
                last = bisect.bisect_right(offsets, max(start, end - 1))
                h = text_hash(text)
                parent_id = layout.parent_id_for(doc_id, ordinal, h)
                # Not the document's content hash: it changes with any page, and the per-parent cache
                # key covers metadata, so carrying it would make every parent miss after one edit.
                meta = {k: v for k, v in doc.metadata.items() if k not in (PAGE_OFFSETS, layout.CONTENT_HASH)}
                meta.update(
                    {
                        layout.KIND: "parent",
                        layout.PARENT_ID: parent_id,
                        layout.DOC_ID: doc_id,
                        layout.PAGES: list(range(first, last + 1)),
                        layout.READABLE_ID: layout.readable_parent_id(doc_id, ordinal),
                        layout.TEXT_HASH: h,
                    }
                )
                parent = TextNode(
                    id_=parent_id,
                    text=text,
                    metadata=meta,
                    excluded_embed_metadata_keys=list(PARENT_META_EXCLUDED),
                    excluded_llm_metadata_keys=list(PARENT_META_EXCLUDED),
                    start_char_idx=start,
                    end_char_idx=end,
                )
                parent.relationships[NodeRelationship.SOURCE] = doc.as_related_node_info()
                out.append(parent)
        return out
