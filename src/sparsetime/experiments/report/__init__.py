"""Reports of runs and sweeps: tables of mean ± std over seeds and the papers' figures."""
from .figures import FigureSpec, choose_figures, parse_figures
from .write import ReportResult, write_report

__all__ = ["FigureSpec", "choose_figures", "parse_figures", "ReportResult", "write_report"]
