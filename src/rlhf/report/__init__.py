"""Reports of a run: PNG plots and a self-contained report.html (`rlhf report`).

report/ reads a run's files and draws; it imports neither torch nor the training stages, and
the stages never import it. matplotlib loads only when something is drawn (report.plots).
"""

from rlhf.report.html import build_report_html, report_run, write_report
from rlhf.report.run_files import StageRun, detect_stage, find_stage_runs

__all__ = ["StageRun", "build_report_html", "detect_stage", "find_stage_runs", "report_run",
           "write_report"]
