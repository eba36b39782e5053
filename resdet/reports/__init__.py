"""Reports built from finished runs: the backbone comparison of the paper's Tables 7 and 8."""

from resdet.reports.compare import compare_backbones
from resdet.reports.runs import Run, identify_backbone, read_run

__all__ = ["Run", "compare_backbones", "identify_backbone", "read_run"]
