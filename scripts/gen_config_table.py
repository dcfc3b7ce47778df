"""Regenerate the configuration table in docs/configuration.md from ``pipeline.config.Settings`` (never edit it by hand)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from pipeline.config import Settings

README = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"  # the table lives there; README.md links to it
BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"


def rows(model: type[BaseModel], prefix: str = "", env: str = "PIPELINE_") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += rows(ann, f"{prefix}{name}.", f"{env}{name.upper()}__")
            continue
        default = field.default if field.default_factory is None else field.default_factory()
        default = getattr(default, "value", default)
        shown = "—" if default is None else f"`{default}`"
        desc = (field.description or "").replace("|", "\\|")
        out.append(f"| `{prefix}{name}` | `{env}{name.upper()}` | {shown} | {desc} |")
    return out


def table() -> str:
    return "\n".join(["| setting | environment variable | default | meaning |", "|---|---|---|---|", *rows(Settings)])


def main() -> None:
    text = README.read_text()
    new = re.sub(f"{re.escape(BEGIN)}.*?{re.escape(END)}", f"{BEGIN}\n{table()}\n{END}", text, flags=re.S)
    README.write_text(new)


if __name__ == "__main__":
    main()
