"""The service's LLM: built at start (weights verified, nothing loaded), warmed up in the background,
and a state ``/readyz`` reports — an enum, so no caller has to parse a status string.
"""

from __future__ import annotations

import logging
import threading
from enum import Enum
from typing import Any

from llama_index.core.llms import LLM

from pipeline.config import LLMProvider, Settings
from pipeline.errors import ConfigError
from pipeline.providers.llm import build_llm

logger = logging.getLogger(__name__)


class LLMState(str, Enum):
    NOT_CONFIGURED = "not configured"
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    OK = "ok"
    FAILED = "failed"


class ServiceLLM:
    """The LLM one service process holds, and how far its loading got.

    Example:
        llm = ServiceLLM(settings, None)
        llm.build(); llm.warm_up()   # /readyz says "loading" until the weights are in
        llm.require()                # the model, or ConfigError with the cause
    """

    def __init__(self, settings: Settings, model: LLM | None = None) -> None:
        self.settings = settings
        self.model = model
        self.state = LLMState.NOT_CONFIGURED if settings.llm.provider is LLMProvider.NONE and model is None else LLMState.NOT_LOADED
        self.error: str | None = None

    @property
    def status(self) -> str:
        """One line for /readyz: the state, with the cause when it failed."""
        return f"failed: {self.error}" if self.state is LLMState.FAILED else self.state.value

    def _failed(self, why: str) -> None:
        self.state, self.error = LLMState.FAILED, why

    def build(self) -> None:
        if self.model is not None or self.settings.llm.provider is LLMProvider.NONE:
            return
        try:
            self.model = build_llm(self.settings)  # resolves and verifies the weights; loads nothing yet
        except ConfigError as exc:
            self._failed(str(exc))
            logger.error("LLM unavailable: %s", exc)

    def warm_up(self) -> None:
        """Load the LLM in the background (``/readyz`` says "loading" meanwhile); a /query that comes
        first waits for the same load."""
        if self.model is None:
            return
        load = getattr(self.model, "load", None)
        if not self.settings.service.warm_llm or load is None:
            self.state = LLMState.OK
            return
        self.state = LLMState.LOADING
        threading.Thread(target=self._load, args=(load,), name="llm-warmup", daemon=True).start()

    def _load(self, load: Any) -> None:
        try:
            load()
        except Exception as exc:  # surfaced by /readyz; /query then fails with the same cause
            self._failed(f"{type(exc).__name__}: {exc}")
            logger.error("LLM warm-up failed: %s", exc)
        else:
            self.state = LLMState.OK
            logger.info("LLM loaded")

    def require(self) -> LLM:
        """The LLM for /query.

        Raises:
            ConfigError: none configured, or its weights could not be loaded.
        """
        if self.model is None:
            if self.state is LLMState.FAILED:
                raise ConfigError(f"LLM unavailable: {self.status}")
            raise ConfigError("no LLM configured (llm.provider=none): use /retrieve, or configure an LLM")
        return self.model
