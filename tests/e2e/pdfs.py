"""Real multi-page PDFs with distinct text per page, written with fpdf2, for sync and crash tests."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = (
    "river mountain copper lantern harbor violet engine orchard glacier falcon meadow quartz beacon "
    "canyon ember willow prism tundra saffron comet garnet thicket ripple summit cobalt delta fjord "
    "marble nectar onyx pepper quiver raven sable tangent umber velvet walnut yarrow zephyr basalt"
).split()


def page_text(seed: str, words: int = 330) -> str:
    """Deterministic sentences for one page; a different seed gives different text."""
    rng = random.Random(seed)
    sentences = []
    while sum(len(s.split()) for s in sentences) < words:
        n = rng.randint(8, 16)
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + ".")
    return f"Section {seed}. " + " ".join(sentences)


def write_pdf(path: Path, pages: list[str]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(auto=False)
    pdf.set_font("Helvetica", size=8)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 3.5, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path
