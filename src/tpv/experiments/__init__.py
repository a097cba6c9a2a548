"""The paper's experiments from one config: cross-origin transfer, multi-task prompts, few-shot
initialisation; rows recorded per job, tables and plots rebuilt from the rows."""

from tpv.experiments.config import ConfigError, ExperimentConfig
from tpv.experiments.report import build_report
from tpv.experiments.runner import Runner, read_rows

__all__ = ["ConfigError", "ExperimentConfig", "Runner", "build_report", "read_rows"]
