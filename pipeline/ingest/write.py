"""Phase 1's writes: one document's parents and references, or its removal, as ``Change``s.

The order of the writes and what a crash leaves (a ``pending`` intent the next run finishes) is the
ledger protocol in ``pipeline/store/ledger.py``, written once and shared with enrichment and repair.
Here only what phase 1 decides: the final entry of a document from its nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.schema import BaseNode

from pipeline.store import layout
from pipeline.store.ledger import Change, LedgerEntry, LedgerWriter, Op, entry_for_nodes


class DocumentWriter(LedgerWriter):
    """Applies one document's new node set to the docstore and the four collections."""

    def write(self, doc_id: str, content_hash: str, fingerprint: str, nodes: Sequence[BaseNode]) -> LedgerEntry:
        """Make the store hold exactly ``nodes`` for ``doc_id``; returns the new ledger entry.

        References already written by the same settings (content-addressed ids) are not written again.

        Raises:
            StoreUnavailable: the docstore cannot be written (e.g. disk full) or Qdrant is unreachable;
                what was committed before stays consistent and the next run finishes the document.
        """
        parents = [n for n in nodes if n.metadata.get(layout.KIND) == "parent" and n.embedding is None]
        refs = [n for n in nodes if n.embedding is not None]
        final = entry_for_nodes(content_hash, fingerprint, parents, refs)
        entry = self.apply(doc_id, Change(Op.WRITE, final, parents=parents, refs=refs, skip_committed=True))
        assert entry is not None
        return entry

    def remove(self, doc_id: str) -> None:
        """Delete every reference and parent of a document, then its ledger entry."""
        self.apply(doc_id, Change(Op.REMOVE, final=None))
