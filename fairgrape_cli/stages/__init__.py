"""Stages: each reads its input files, calls the method, writes its artifact and returns data.

One module per stage (score, prune, finetune, report, compare, export, quantize) and their shared plumbing
(``_inputs``). Imports method, render, io and the package's foundations; never flows or commands.
Nothing here prints: progress goes to the ``ProgressSink`` a caller passes.
"""

from ._inputs import (
    DEFAULT_FINETUNED,
    DEFAULT_IMPORTANCE,
    DEFAULT_MASKS,
    DEFAULT_PRUNED,
    STORED_DTYPES,
    Loading,
    ModelSource,
    PreparedData,
)
from .compare import ComparisonResult, compare_files
from .data_prune import DataPruneSummary, data_prune
from .export import FORMATS as EXPORT_FORMATS
from .export import ExportSummary, export
from .finetune import FinetuneSummary, finetune
from .prune import PruneSummary, prune
from .quantize import QuantizeSummary, quantize
from .report import ReportResult, report, save_report
from .score import ScoreSummary, score

__all__ = [
    "DEFAULT_FINETUNED",
    "DEFAULT_IMPORTANCE",
    "DEFAULT_MASKS",
    "DEFAULT_PRUNED",
    "STORED_DTYPES",
    "EXPORT_FORMATS",
    "ComparisonResult",
    "DataPruneSummary",
    "ExportSummary",
    "FinetuneSummary",
    "Loading",
    "ModelSource",
    "PreparedData",
    "PruneSummary",
    "QuantizeSummary",
    "ReportResult",
    "ScoreSummary",
    "compare_files",
    "data_prune",
    "export",
    "finetune",
    "prune",
    "quantize",
    "report",
    "save_report",
    "score",
]
