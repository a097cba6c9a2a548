"""The paper's experiments from one config: cross-origin transfer, multi-task prompts, few-shot
initialisation; rows recorded per job, tables and plots rebuilt from the rows.

Names load lazily: the report (tpv.experiments.report) and the rows (tpv.experiments.rows)
import without torch; the config and the runner bring it in when used.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "ConfigError": "tpv.experiments.config",
    "ExperimentConfig": "tpv.experiments.config",
    "Runner": "tpv.experiments.runner",
    "StaleRows": "tpv.experiments.runner",
    "build_report": "tpv.experiments.report",
    "read_rows": "tpv.experiments.rows",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
