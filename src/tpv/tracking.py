"""Experiment tracking through Accelerate's trackers: `--report-to tensorboard|wandb|mlflow|none`.

A run sends its config once, then `train/loss` and `train/lr` every step, `val/score` (and the
validation metrics) at every evaluation, and at the end `test/*`, `init_test/*`, `best_val` and
`best_step`. The numbers are those written to log.jsonl and metrics.json, so a dashboard never
disagrees with the run directory (TensorBoard stores them as float32).

Where they go:
- tensorboard: event files under <run dir>/tensorboard/ (`tensorboard --logdir runs/`).
- wandb: the W&B project "tpv", run named after the run directory. Offline (no account, no
  network): `WANDB_MODE=offline tpv train ... --report-to wandb`, later `wandb sync <dir>`.
- mlflow: the experiment "tpv" of the tracking server in MLFLOW_TRACKING_URI (Accelerate's
  default: ./mlruns).
The tracker packages are optional (`pip install 'task-prompt-vectors[tracking]'`); asking for
one that is not installed stops the run before any work with an error naming the package.
The default, "none", imports nothing and logs nothing beyond the run directory.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tpv.options import Choice

log = logging.getLogger(__name__)


class ReportTo(Choice):
    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"
    mlflow = "mlflow"


REPORT_TO = tuple(m.value for m in ReportTo)
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
PROJECT = "tpv"
TENSORBOARD_DIR = "tensorboard"  # under the run directory


class TrackingError(ValueError):
    """The requested tracker is unknown or its package is missing."""


def check(report_to: str) -> str:
    """The tracker name, validated: known, and its package importable."""
    report_to = getattr(report_to, "value", report_to)  # a ReportTo member or its string
    if report_to not in REPORT_TO:
        raise TrackingError(f"--report-to {report_to!r}: use one of {', '.join(REPORT_TO)}")
    package = PACKAGES.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise TrackingError(
            f"--report-to {report_to}: the {package!r} package is not installed; "
            f"pip install {package} (or the extra: pip install 'task-prompt-vectors[tracking]')"
        )
    return report_to


def accelerator_kwargs(report_to: str, out: str | Path) -> dict[str, Any]:
    """Arguments for `Accelerator(...)` that attach the tracker (none: no arguments)."""
    if check(report_to) == "none":
        return {}
    return {"log_with": report_to, "project_dir": str(out)}


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Config values as trackers accept them (TensorBoard hparams: scalars or strings only)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        value = getattr(value, "value", value)  # str enums (Choice) as their plain string
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = json.dumps(value, default=str, sort_keys=True)
    return out


def scalars(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of `values`, keyed `prefix + key` (texts, lists and NaN dropped)."""
    return {
        f"{prefix}{k}": float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class RunTracker:
    """One run's tracker on an Accelerator made with `accelerator_kwargs`; no-op for "none"."""

    def __init__(self, acc, report_to: str, run_name: str, config: Mapping[str, Any]):
        report_to = check(report_to)
        self.acc, self.active = acc, report_to != "none"
        if not self.active:
            return
        project = TENSORBOARD_DIR if report_to == "tensorboard" else PROJECT
        init_kwargs = {
            "wandb": {"name": run_name},
            "mlflow": {"run_name": run_name},
        }.get(report_to, {})
        acc.init_trackers(project, config=flat_config(config), init_kwargs={report_to: init_kwargs})
        log.info("tracking this run with %s", report_to)

    def log(self, values: Mapping[str, Any], step: int, prefix: str = "") -> None:
        if self.active:
            numbers = scalars(values, prefix)
            if numbers:
                self.acc.log(numbers, step=step)

    def log_step(self, step: int, loss: float, lr: float) -> None:
        self.log({"train/loss": loss, "train/lr": lr}, step)

    def log_eval(self, step: int, result: Mapping[str, Any]) -> None:
        self.log(result, step, prefix="val/")

    def log_final(self, metrics: Mapping[str, Any]) -> None:
        """Test scores and the selection's outcome, at the last step."""
        step = int(metrics.get("steps", 0))
        for key in ("test", "init_test"):
            if isinstance(metrics.get(key), Mapping):
                self.log(metrics[key], step, prefix=f"{key}/")
        self.log({k: metrics[k] for k in ("best_val", "best_step") if k in metrics}, step)

    def finish(self) -> None:
        if self.active:
            self.acc.end_training()
            self.active = False


def open_run(report_to: str, out: str | Path, run_name: str, config: Mapping[str, Any]):
    """A tracker for work that has no Accelerator of its own (compose): makes one."""
    if check(report_to) == "none":
        return RunTracker(None, "none", run_name, config)
    import torch
    from accelerate import Accelerator

    acc = Accelerator(cpu=not torch.cuda.is_available(), **accelerator_kwargs(report_to, out))
    return RunTracker(acc, report_to, run_name, config)
