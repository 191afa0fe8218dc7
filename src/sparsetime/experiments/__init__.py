"""Experiments built from several runs: lottery-ticket levels, method comparisons."""
from .lottery import LevelResult, LotteryResult, format_table, lottery_configs, lottery_directory, run_lottery

__all__ = ["LevelResult", "LotteryResult", "format_table", "lottery_configs", "lottery_directory", "run_lottery"]
