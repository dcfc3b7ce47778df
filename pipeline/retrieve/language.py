"""Which language a short text is in: writing system first, then distinctive function words.

Why a heuristic and not a model: the offline models here are English-only (MiniLM, the ms-marco
cross-encoder), and a question in German against English documents gets confident-looking English
extracts that answer nothing. All we need is "the question is not in the documents' language", for
the few languages a user is likely to type; a script count plus stop-word lists does that in
microseconds and downloads nothing. Words that are also common English words ("die", "was", "a")
are left out of the other lists, so an English question never reads as German.

``None`` means "cannot tell" (too few signals): callers must then assume no mismatch.
"""

from __future__ import annotations

import re
import unicodedata

NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ru": "Russian", "ar": "Arabic",
    "el": "Greek", "he": "Hebrew", "hi": "Hindi", "th": "Thai",
}

# Distinctive function words (question words, articles, auxiliaries), none of them common in English text.
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the of and is are was were what which who whom whose when where why how does do did this that these those "
        "with from by for to in on at an be been has have had not it its they their there than can could would should "
        "will about into many much".split()
    ),
    "de": frozenset(
        "der das ist und von wie wer welche welcher welches nicht mit ein eine einen einem einer für auf den dem des "
        "im zu sind wurde wurden warum wann wo was ist sich auch oder aber nach bei aus über unter zwischen viele "
        "wieviele wieviel ich sie es wir ihr hat haben werden kann können".split()
    )
    - frozenset({"was", "die", "so", "also", "an", "in", "war", "hat"}),
    "fr": frozenset(
        "le la les est et des du une un qui que quoi quel quelle quels quelles où comment pourquoi quand dans pour "
        "sur avec sont été pas ce cette ces il elle ils elles nous vous au aux leur combien qu est-ce".split()
    ),
    "es": frozenset(
        "el la los las es y del una un que qué quién cuál cuáles dónde cómo por qué cuándo en para con son fue "
        "ser no este esta estos estas su sus al cuántos cuántas cuánto hay".split()
    )
    - frozenset({"a", "no"}),
    "it": frozenset(
        "il lo la gli le è e del della dei delle un una che chi quale quali dove come perché quando per con sono "
        "stato non questo questa quanti quante quanto nel nella".split()
    ),
    "pt": frozenset(
        "o os a as é e do da dos das um uma que quem qual quais onde como por quando para com são foi não este "
        "esta isso seu sua quantos quantas quanto no na".split()
    )
    - frozenset({"a", "as", "no", "do"}),
    "nl": frozenset(
        "de het een is en van wat wie welke waar hoe waarom wanneer niet met voor op zijn werd worden dit deze "
        "die er hoeveel ook aan bij".split()
    )
    - frozenset({"die", "is", "an", "op"}),
}
# The other lists, minus anything English shares (their overlap makes English look foreign).
for _lang in ("de", "fr", "es", "it", "pt", "nl"):
    _STOPWORDS[_lang] = _STOPWORDS[_lang] - _STOPWORDS["en"] - frozenset({"a", "i", "as", "on", "in", "die", "do", "no", "me", "he", "we", "us"})

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)


def _script(ch: str) -> str | None:
    """The writing system of one letter, coarsely (Latin letters with accents are Latin)."""
    code = ord(ch)
    if code < 0x250:
        return "latin"
    if 0x370 <= code < 0x400:
        return "el"
    if 0x400 <= code < 0x530:
        return "ru"
    if 0x590 <= code < 0x600:
        return "he"
    if 0x600 <= code < 0x700:
        return "ar"
    if 0x900 <= code < 0x980:
        return "hi"
    if 0xE00 <= code < 0xE80:
        return "th"
    if 0x3040 <= code < 0x3100:
        return "ja"
    if 0xAC00 <= code < 0xD7B0 or 0x1100 <= code < 0x1200:
        return "ko"
    if 0x4E00 <= code < 0xA000 or 0x3400 <= code < 0x4DC0:
        return "han"
    return None


def detect(text: str, min_words: int = 2) -> str | None:
    """ISO 639-1 code of ``text``'s language, or None when it cannot be told.

    A non-Latin script holding most letters decides alone (Han without kana is Chinese). Latin text is
    the language with the most distinctive function words, needing ``min_words`` of them (one will do
    in a question of three words or more where no other language has any) and more than any other
    language; a tie, or too few, is None.
    """
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            script = _script(ch)
            if script:
                counts[script] = counts.get(script, 0) + 1
    letters = sum(counts.values())
    if not letters:
        return None
    script, n = max(counts.items(), key=lambda kv: kv[1])
    if script != "latin" and n >= 0.5 * letters:
        if script == "han":
            return "ja" if counts.get("ja", 0) else "zh"
        return script
    words = [unicodedata.normalize("NFC", w.lower()) for w in _WORD.findall(text)]
    hits = {lang: sum(1 for w in words if w in stop) for lang, stop in _STOPWORDS.items()}
    ranked = sorted(hits.items(), key=lambda kv: -kv[1])
    (best, top), (_, second) = ranked[0], ranked[1]
    if top == second or top < 1 or (top < min_words and (second > 0 or len(words) < 3)):
        return None  # a single function word decides only when no other language has one
    return best


def name(code: str | None) -> str:
    """A language's English name for messages ("German"), the code itself if unknown."""
    return NAMES.get(code or "", code or "unknown")
