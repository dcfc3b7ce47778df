"""Retrieval evaluation: question sets → hit rate and MRR per mode (``python -m pipeline eval``).

matcher.py: is a parent relevant to a reference context (pure); metrics.py: hit@k, MRR@k (pure);
datasets.py: LabelledRagDataset / EmbeddingQAFinetuneDataset → EvalDataset; run.py: dataset × modes ×
k → EvalReport; generate.py: folder → LLM-written question set; command.py: the CLI command.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.eval.datasets import EvalDataset, EvalExample, load_dataset
    from pipeline.eval.matcher import RelevanceMatcher
    from pipeline.eval.run import EvalReport, EvalRunner, ModeResult

# Imported on first use (PEP 562): run.py pulls in LlamaIndex, and `python -m pipeline --help` imports
# this package (for the eval command) and must stay fast.
_LAZY = {
    "EvalDataset": "datasets", "EvalExample": "datasets", "load_dataset": "datasets", "RelevanceMatcher": "matcher",
    "EvalReport": "run", "EvalRunner": "run", "ModeResult": "run",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pipeline.eval' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"pipeline.eval.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = ["EvalDataset", "EvalExample", "EvalReport", "EvalRunner", "ModeResult", "RelevanceMatcher", "load_dataset"]
