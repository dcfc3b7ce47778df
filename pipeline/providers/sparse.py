"""BM25 sparse vectors for Qdrant: one tokenizer for documents and queries, offline and deterministic.

Why our own and not fastembed's ``Bm25``: fastembed downloads its stop-word files on construction,
which fails offline. Why BM25 at all: dense MiniLM/bge vectors blur rare exact terms (a model
number, a name, an acronym) that a user types verbatim; a lexical match ranks them first.

How the score splits between us and Qdrant: a document vector holds, per term, BM25's saturated and
length-normalised term frequency ``tf·(k1+1) / (tf + k1·(1-b+b·len/avg_len))``; a query vector holds
1.0 per distinct term. The collection's sparse vector is created with ``modifier=IDF``, so Qdrant
multiplies by each term's inverse document frequency at query time from its own live counts: the
statistics stay right as documents are added and removed, and no corpus-wide state lives here.
``avg_len`` is therefore a constant (as in fastembed), not a corpus statistic: the same text gives
the same vector on every run and machine, which the ingest cache and ``check --repair`` rely on.

Tokens: NFKC, case-folded (ß = ss), words of letters and digits (``[^\\W_]+``), English stop words dropped,
Snowball English stemming; a token becomes a dimension by CRC32 (stable across processes, unlike
``hash()``).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import snowballstemmer

VECTOR_NAME = "bm25"  # the sparse vector's name in every collection (the dense vector stays unnamed)
K1 = 1.2
B = 0.75
AVG_LEN = 256.0
MAX_TOKEN_CHARS = 40  # longer "words" are hashes, base64 or garbage from PDF extraction

# The Snowball project's English stop-word list (snowballstem.org/algorithms/english/stop.txt).
STOP_WORDS = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her
    hers herself it its itself they them their theirs themselves what which who whom this that these
    those am is are was were be been being have has had having do does did doing would should could
    ought i'm you're he's she's it's we're they're i've you've we've they've i'd you'd he'd she'd we'd
    they'd i'll you'll he'll she'll we'll they'll isn't aren't wasn't weren't hasn't haven't hadn't
    doesn't don't didn't won't wouldn't shan't shouldn't can't cannot couldn't mustn't let's that's
    who's what's here's there's when's where's why's how's a an the and but if or because as until
    while of at by for with about against between into through during before after above below to
    from up down in out on off over under again further then once here there when where why how all
    any both each few more most other some such no nor not only own same so than too very s t can
    will just don should now
    """.split()
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop-word-free, stemmed terms of ``text`` in order (empty for empty text).

    Example:
        tokenize("The GPUs were training networks")  # ['gpus', 'train', 'network']
    """
    text = unicodedata.normalize("NFKC", text or "").casefold()
    out = []
    for word in _WORD.findall(text):
        if word in STOP_WORDS or len(word) > MAX_TOKEN_CHARS:
            continue
        out.append(_stem(word))
    return out


def term_id(term: str) -> int:
    """A stable 32-bit dimension for a term (Qdrant sparse indices are u32)."""
    return zlib.crc32(term.encode("utf-8"))


def _merge(counts: Counter[str]) -> dict[int, float]:
    # Two terms hashing to one dimension (rare) add their counts rather than overwrite each other.
    merged: dict[int, float] = {}
    for term, n in counts.items():
        idx = term_id(term)
        merged[idx] = merged.get(idx, 0.0) + n
    return merged


def doc_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of one document: BM25 term-frequency weights, sorted by index.

    A text without terms gets one zero-weight placeholder dimension rather than an empty vector, so
    that every point *has* a BM25 vector and a backfill can tell done points from missing ones.
    """
    terms = tokenize(text)
    if not terms:
        return [0], [0.0]
    norm = K1 * (1.0 - B + B * len(terms) / AVG_LEN)
    weights = {i: tf * (K1 + 1.0) / (tf + norm) for i, tf in _merge(Counter(terms)).items()}
    indices = sorted(weights)
    return indices, [round(weights[i], 6) for i in indices]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of a query: 1.0 per distinct term (Qdrant's IDF modifier weighs them)."""
    indices = sorted({term_id(t) for t in tokenize(text)})
    return indices, [1.0] * len(indices)


def doc_vectors(texts: Sequence[str]) -> tuple[list[list[int]], list[list[float]]]:
    """Batch form, in the ``sparse_doc_fn`` shape LlamaIndex's ``QdrantVectorStore`` expects."""
    pairs = [doc_vector(t) for t in texts]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def query_vectors(texts: Sequence[str]) -> tuple[list[list[int]], list[list[float]]]:
    """Batch form, in the ``sparse_query_fn`` shape LlamaIndex's ``QdrantVectorStore`` expects."""
    pairs = [query_vector(t) for t in texts]
    return [p[0] for p in pairs], [p[1] for p in pairs]
