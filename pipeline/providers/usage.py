"""What an embedder embedded: the counters every embedder here keeps (a query process proves with them
that it embedded 0 corpus texts, an unchanged re-ingest that it embedded nothing)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class EmbedUsage:
    """Thread-safe counters of texts (corpus) and queries embedded by one embedder."""

    texts: int = 0
    queries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, texts: int = 0, queries: int = 0) -> None:
        with self._lock:
            self.texts += texts
            self.queries += queries
