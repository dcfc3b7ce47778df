"""Relevance without our chunking: does a retrieved parent cover a reference context? (pure functions)

Both texts are normalised (NFKC, lower case, only ``[a-z0-9]`` kept), so PDF line breaks, hyphen
spacing and punctuation do not matter. Up to ``windows`` evenly spaced ``window_chars``-character
windows are cut from the reference; the parent is relevant when at least ``threshold`` of them occur
in it. A parent shorter than the reference cannot hold it all, so it also counts when at least
``threshold`` of the parent's own windows occur in the reference (the parent lies inside it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")

WINDOWS = 20
WINDOW_CHARS = 50
THRESHOLD = 0.5


def normalise(text: str) -> str:
    """NFKC, lower case, only ``[a-z0-9]``: ``"Deep-\\nLearning, 2012"`` → ``"deeplearning2012"``."""
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", text).lower())


def windows_of(norm: str, count: int = WINDOWS, size: int = WINDOW_CHARS) -> list[str]:
    """Up to ``count`` evenly spaced, distinct ``size``-character windows of normalised text.

    Text shorter than ``size`` is one window (itself); empty text has none.
    """
    if not norm:
        return []
    if len(norm) <= size:
        return [norm]
    last = len(norm) - size
    if count <= 1:
        starts = [0]
    else:
        starts = sorted({round(i * last / (count - 1)) for i in range(count)})
    return [norm[s : s + size] for s in starts]


def window_share(windows: Sequence[str], haystack: str) -> float:
    """Share of ``windows`` found in ``haystack`` (0.0 when there are no windows)."""
    if not windows:
        return 0.0
    return sum(1 for w in windows if w in haystack) / len(windows)


@dataclass(frozen=True)
class Reference:
    """A normalised reference context with its windows, computed once per example."""

    norm: str
    windows: tuple[str, ...]

    @classmethod
    def of(cls, text: str, count: int = WINDOWS, size: int = WINDOW_CHARS) -> "Reference":
        norm = normalise(text)
        return cls(norm=norm, windows=tuple(windows_of(norm, count, size)))


def covers(reference: Reference, parent_norm: str, threshold: float = THRESHOLD, count: int = WINDOWS, size: int = WINDOW_CHARS) -> bool:
    """True if the normalised parent covers the reference (or, being shorter, lies inside it)."""
    if not reference.windows or not parent_norm:
        return False
    if window_share(reference.windows, parent_norm) >= threshold:
        return True
    if len(parent_norm) < len(reference.norm):
        return window_share(windows_of(parent_norm, count, size), reference.norm) >= threshold
    return False


class RelevanceMatcher:
    """Decide whether a parent text is relevant to an example with one or more reference contexts.

    Example:
        matcher = RelevanceMatcher(["The network had 60 million parameters ..."])
        matcher.matches(parent_text)  # True if the parent covers >= 50 % of the reference windows
    """

    def __init__(
        self,
        references: Sequence[str],
        threshold: float = THRESHOLD,
        windows: int = WINDOWS,
        window_chars: int = WINDOW_CHARS,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if windows < 1 or window_chars < 1:
            raise ValueError(f"windows and window_chars must be at least 1, got {windows} and {window_chars}")
        self.threshold = threshold
        self.count = windows
        self.size = window_chars
        self.references = [r for r in (Reference.of(t, windows, window_chars) for t in references) if r.windows]

    def matches_normalised(self, parent_norm: str) -> bool:
        return any(covers(r, parent_norm, self.threshold, self.count, self.size) for r in self.references)

    def matches(self, parent_text: str) -> bool:
        """True if the parent covers any of the reference contexts."""
        return self.matches_normalised(normalise(parent_text))
