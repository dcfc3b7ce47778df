"""Retrieval evaluation: question sets → hit rate and MRR per mode (``python -m pipeline eval``).

matcher.py: is a parent relevant to a reference context (pure); metrics.py: hit@k, MRR@k (pure);
datasets.py: LabelledRagDataset / EmbeddingQAFinetuneDataset → EvalDataset; run.py: dataset × modes ×
k → EvalReport; generate.py: folder → LLM-written question set; command.py: the CLI command.
"""

from pipeline.eval.datasets import EvalDataset, EvalExample, load_dataset
from pipeline.eval.matcher import RelevanceMatcher
from pipeline.eval.run import EvalReport, EvalRunner, ModeResult

__all__ = ["EvalDataset", "EvalExample", "EvalReport", "EvalRunner", "ModeResult", "RelevanceMatcher", "load_dataset"]
