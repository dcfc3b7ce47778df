"""``python -m pipeline`` → the typer app in ``cli.py``."""

from pipeline.cli import main

main()
