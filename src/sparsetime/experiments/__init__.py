"""Experiments built from several runs: lottery-ticket levels, sweeps over grids of runs, and their reports."""
from .index import SweepIndex
from .lottery import LevelResult, LotteryResult, format_table, lottery_configs, lottery_directory, run_lottery
from .points import Point, expand_points
from .report import ReportResult, write_report
from .sweep import SweepState, format_plan, format_status, run_sweep, sweep_state
from .sweep_file import SweepSpec, load_sweep, parse_sweep

__all__ = ["LevelResult", "LotteryResult", "format_table", "lottery_configs", "lottery_directory", "run_lottery",
           "SweepIndex", "Point", "expand_points", "ReportResult", "write_report", "SweepState", "format_plan",
           "format_status", "run_sweep", "sweep_state", "SweepSpec", "load_sweep", "parse_sweep"]
