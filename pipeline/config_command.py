"""``pipeline config``: the effective settings and where each value came from (default, file, environment), secrets masked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.output import emit_json, out, settings_for, setup_logging


def config_command(
    store: Annotated[Path, typer.Option("--store", envvar="PIPELINE_STORE", help="Store folder (cache, docstore, embedded Qdrant).")] = Path("storage"),
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
) -> None:
    """Print the effective settings and the source of each value (default, file, environment); secrets masked.

    \b
    Example:
      PIPELINE_RETRIEVAL__TOP_K=5 python -m pipeline config
    """
    setup_logging(False)
    settings = settings_for(store)  # an unknown variable or key exits 2 here, naming the closest one
    from pipeline.settings_check import effective

    from pipeline.config import config_file

    toml_path = config_file()
    rows = effective(settings, toml_path)
    if json_out:
        emit_json({"config_file": str(toml_path) if toml_path.is_file() else None, "settings": rows})
        return
    table = Table(title=f"settings (file: {toml_path if toml_path.is_file() else 'none'})")
    for col in ("setting", "value", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["key"], str(r["value"]), r["source"])
    out.print(table)
