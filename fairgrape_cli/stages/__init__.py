"""Stages: each resolves its inputs, calls the method, writes its artifact and returns data.

One module per stage (score, prune, finetune, report, compare, data_prune, export, quantize) and their
shared plumbing (``_inputs``). Each reads as three steps: ``resolve_<stage>`` checks the flags
and fills what they leave out from the artifacts' records into a small frozen dataclass (no
model loaded, nothing taken from the current folder: the command line resolves its own
defaults), then the method computes, then io writes. Imports method, render, io and the
package's foundations; never flows or commands. Nothing here prints: progress goes to the
``ProgressSink`` a caller passes.
"""

from ._inputs import DEFAULT_PRUNED, STORED_DTYPES, Loading, ModelSource, PreparedData
from ._report_files import ReportFiles, save_report
from .compare import ComparisonResult, compare_files
from .data_prune import DataPruneInputs, DataPruneSummary, data_prune, resolve_data_prune
from .export import FORMATS as EXPORT_FORMATS
from .export import ExportInputs, ExportSummary, export, resolve_export
from .finetune import FinetuneInputs, FinetuneSummary, finetune, refuse_unfit_teacher, resolve_finetune
from .prune import PruneInputs, PruneSummary, prune, resolve_prune
from .quantize import QuantizeInputs, QuantizeSummary, quantize, resolve_quantize
from .report import ReportInputs, ReportResult, report, resolve_report
from .score import ScoreInputs, ScoreSummary, resolve_score, score

__all__ = [
    "DEFAULT_PRUNED",
    "STORED_DTYPES",
    "EXPORT_FORMATS",
    "ComparisonResult",
    "DataPruneInputs",
    "DataPruneSummary",
    "ExportInputs",
    "ExportSummary",
    "FinetuneInputs",
    "FinetuneSummary",
    "Loading",
    "ModelSource",
    "PreparedData",
    "PruneInputs",
    "PruneSummary",
    "QuantizeInputs",
    "QuantizeSummary",
    "ReportInputs",
    "ReportResult",
    "ScoreInputs",
    "ScoreSummary",
    "compare_files",
    "data_prune",
    "export",
    "finetune",
    "prune",
    "quantize",
    "report",
    "resolve_data_prune",
    "resolve_export",
    "refuse_unfit_teacher",
    "resolve_finetune",
    "resolve_prune",
    "resolve_quantize",
    "resolve_report",
    "resolve_score",
    "ReportFiles",
    "save_report",
    "score",
]
