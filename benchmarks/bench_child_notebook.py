"""Child of bench_papers.py: the seed notebook's approach in a new process, for comparison with ours.

Load the PDFs, split 1024-token parents, build the same references (chunk-128/256/512 IndexNodes plus
the parent itself), embed every reference with the same embedding model, build an in-memory
``VectorStoreIndex`` and a ``RecursiveRetriever`` over a ``node_dict`` of all nodes, answer one
retrieval. Embedding time is measured on its own: it is the raw throughput of the model on exactly
the texts our ingestion embeds.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.retrievers import RecursiveRetriever  # noqa: E402
from llama_index.core.schema import IndexNode, MetadataMode  # noqa: E402

from pipeline.config import Settings  # noqa: E402
from pipeline.ingest.load import discover, load_document  # noqa: E402
from pipeline.ingest.reference import ReferenceBuilder  # noqa: E402
from pipeline.ingest.split import ParentSplitter  # noqa: E402
from pipeline.providers.embeddings import build_embedder  # noqa: E402

T_IMPORT = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", type=Path, nargs="+")
    ap.add_argument("--query", required=True)
    ap.add_argument("--top-k", type=int, default=3)
    args = ap.parse_args()
    settings = Settings()
    embedder = build_embedder(settings)
    embedder.load()
    splitter = ParentSplitter(chunk_size=settings.ingest.parent_chunk_size)
    refs_builder = ReferenceBuilder(chunk_sizes=settings.ingest.child_chunk_sizes, chunk_overlap=settings.ingest.chunk_overlap)
    parents, refs = [], []
    for path in discover(args.paths):
        try:  # like ingestion, a file that fails is skipped
            nodes = refs_builder(splitter([load_document(path)]))
        except Exception:
            continue
        for node in nodes:
            (refs if isinstance(node, IndexNode) else parents).append(node)
    t_split = time.perf_counter()
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in refs]
    vectors = embedder.get_text_embedding_batch(texts)
    t_embed = time.perf_counter()
    for node, vec in zip(refs, vectors):
        node.embedding = vec
    index = VectorStoreIndex(refs, embed_model=embedder)
    node_dict = {n.node_id: n for n in parents}
    retriever = RecursiveRetriever("vector", retriever_dict={"vector": index.as_retriever(similarity_top_k=args.top_k * 10)}, node_dict=node_dict)
    t_index = time.perf_counter()
    hits = retriever.retrieve(args.query)
    t_first = time.perf_counter()
    print(
        json.dumps(
            {
                "import_s": round(T_IMPORT - T0, 3),
                "load_split_s": round(t_split - T_IMPORT, 3),
                "embed_s": round(t_embed - t_split, 3),
                "index_s": round(t_index - t_embed, 3),
                "first_retrieve_s": round(t_first - t_index, 3),
                "in_process_s": round(t_first - T0, 3),
                "parents": len(parents),
                "texts": len(texts),
                "chars": sum(len(t) for t in texts),
                "top": [h.node.metadata.get("readable_id", "") for h in hits[: args.top_k]],
            }
        )
    )


if __name__ == "__main__":
    main()
