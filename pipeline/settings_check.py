"""Settings that cannot be silently wrong: unknown ``PIPELINE_*`` variables and TOML keys are errors naming
the closest valid one, and ``pipeline config`` shows every effective value with where it came from.

Why: pydantic-settings ignores names it does not know (``extra="ignore"``), so ``PIPELINE_RETRIEVAL__TOPK=5``
or ``topk = 5`` in ``pipeline.toml`` left top_k at 3 without a word. Variables the product reads that are
not settings (``NOT_SETTINGS``) stay allowed.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

PREFIX = "PIPELINE_"
# Read by the product but not settings: the config file's path, the model cache, the crash-test hook.
NOT_SETTINGS = frozenset({"PIPELINE_CONFIG", "PIPELINE_MODEL_CACHE", "PIPELINE_FAULT_PAUSE", "PIPELINE_API_TOKEN", "PIPELINE_STORE",
                          "PIPELINE_LOG_FILE", "PIPELINE_SERVICE_URL"})  # the last two: scripts/scheduled_ingest.py
# Settings also read from these established names (config.Settings._established_env).
ESTABLISHED = {"qdrant.url": "QDRANT_URL", "qdrant.api_key": "QDRANT_API_KEY", "openai_api_key": "OPENAI_API_KEY", "service.api_token": "PIPELINE_API_TOKEN"}


def leaf_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, bool]]:
    """Every dotted setting name, with whether it is an open mapping (``ingest.pdf_passwords``: any key below it)."""
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from leaf_keys(ann, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", getattr(ann, "__origin__", None) is dict


def _known(path: str, keys: dict[str, bool]) -> bool:
    if path in keys:
        return True
    return any(open_map and path.startswith(key + ".") for key, open_map in keys.items())


def _section(path: str, keys: dict[str, bool]) -> bool:
    return any(k.startswith(path + ".") for k in keys)


def unknown_settings(settings_cls: type[BaseModel], environ: Mapping[str, str], toml_data: Mapping[str, Any], toml_path: Path | None) -> list[str]:
    """One message per unknown ``PIPELINE_*`` variable or TOML key, each naming the closest valid one."""
    keys = dict(leaf_keys(settings_cls))
    env_names = {PREFIX + k.upper().replace(".", "__"): k for k in keys}
    problems = []
    for var in sorted(environ):
        upper = var.upper()
        if not upper.startswith(PREFIX) or upper in NOT_SETTINGS:
            continue
        path = upper[len(PREFIX):].lower().replace("__", ".")
        if _known(path, keys):
            continue
        close = difflib.get_close_matches(upper, list(env_names) + sorted(NOT_SETTINGS), n=1, cutoff=0.6)
        problems.append(f"{var} names no setting" + (f": did you mean {close[0]}?" if close else " (`python -m pipeline config` lists them)"))

    def walk(data: Mapping[str, Any], prefix: str) -> None:
        for key, value in data.items():
            path = f"{prefix}{key}"
            if isinstance(value, Mapping) and _section(path, keys) and path not in keys:
                walk(value, path + ".")
            elif not _known(path, keys):
                close = difflib.get_close_matches(path, list(keys), n=1, cutoff=0.6)
                problems.append(f"{toml_path}: {path} names no setting" + (f": did you mean {close[0]}?" if close else ""))

    walk(toml_data, "")
    return problems


def read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        return tomllib.load(f)


def check_sources(settings_cls: type[BaseModel], toml_path: Path) -> None:
    """Raise ``ValueError`` listing every unknown variable or key (``Settings()`` fails: exit 2, the service does not start)."""
    try:
        data = read_toml(toml_path)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{toml_path}: cannot be read as TOML ({exc})") from exc
    problems = unknown_settings(settings_cls, os.environ, data, toml_path)
    if problems:
        raise ValueError("; ".join(problems))


def effective(settings: BaseModel, toml_path: Path) -> list[dict[str, Any]]:
    """Every setting: its value (secrets masked) and where it came from: environment, file or default."""
    data = read_toml(toml_path)
    env = {k.upper(): v for k, v in os.environ.items()}
    rows = []
    for key, _ in leaf_keys(type(settings)):
        value: Any = settings
        for part in key.split("."):
            value = getattr(value, part)
        if isinstance(value, SecretStr):
            value = "**********" if value.get_secret_value() else ""
        elif isinstance(value, dict) and key.endswith("passwords"):
            value = {k: "**********" for k in value}
        elif isinstance(value, Path):
            value = str(value)
        elif hasattr(value, "value"):
            value = value.value
        elif isinstance(value, list):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        var = PREFIX + key.upper().replace(".", "__")
        if var in env or (ESTABLISHED.get(key) in env):
            source = f"environment ({var if var in env else ESTABLISHED[key]})"
        elif node is not None:
            source = f"file ({toml_path})"
        else:
            source = "default"
        rows.append({"key": key, "value": value, "source": source})
    return rows
