"""Server folders out of client-facing text: errors and readiness reasons are written for the operator
and often name the store or an ingest root, and a response must not tell a client where the server
keeps its data. Its own module because both the app (error bodies) and the routes (``/readyz``) use it.
"""

from __future__ import annotations

import os
import re

from pipeline.config import Settings


def server_paths(settings: Settings) -> list[tuple[str, str]]:
    """(path, placeholder) pairs for the server's own folders, longest first, as they may appear in messages."""
    pairs: dict[str, str] = {}
    for path, name in [(settings.store, "<store>"), *((root, "<ingest root>") for root in settings.service.ingest_roots)]:
        for form in {str(path), str(path.absolute()), os.path.realpath(path)}:
            if form not in ("", ".", "/"):
                pairs[form] = name
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


# A server path is replaced only where it is a whole path: not preceded by a path character (so
# ``/x/srv/docs`` is not ``/x<ingest root>``) and followed by the end, a ``/`` or what ends a path in a
# message (space, quote, bracket, ``:``, ``;``, or ``.``/``,`` before a space). ``/srv/docs-evil/x`` is left
# alone: rewritten to ``<ingest root>-evil/x`` it would tell a client that ``/srv/docs`` is a root.
_BEFORE = r"(?<![\w./~-])"
_AFTER = r"(?=$|/|[\s'\"`)\]}>:;]|[.,](?:$|\s))"


def redact_paths(text: str, settings: Settings) -> str:
    """``text`` with the store folder and ingest roots replaced by placeholders wherever they appear as
    whole paths (component boundaries respected): a response must not tell a client where the server
    keeps its data."""
    for path, name in server_paths(settings):
        if path in text:
            text = re.sub(_BEFORE + re.escape(path) + _AFTER, lambda _: name, text)
    return text
