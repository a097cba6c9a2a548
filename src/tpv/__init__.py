"""task-prompt-vectors: modular soft prompts by arithmetic on task prompt vectors.

The public API (see docs/architecture.md); names load on first use, so `import tpv` (and the
`tpv` command's start) stays cheap:

    from tpv import Backbone, TrainConfig, train, load, combine, evaluate, get_task
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "Origin": "tpv.vectors",
    "SoftPrompt": "tpv.vectors",
    "TaskPromptVector": "tpv.vectors",
    "load": "tpv.vectors",
    "IncompatibleError": "tpv.vectors",
    "FormatError": "tpv.io",
    "Backbone": "tpv.backbone",
    "TrainConfig": "tpv.train",
    "TrainResult": "tpv.train",
    "train": "tpv.train",
    "Evaluator": "tpv.evaluate",
    "evaluate": "tpv.evaluate",
    "mean_score": "tpv.evaluate",
    "combine": "tpv.merge",
    "combine_prompt": "tpv.merge",
    "combine_searched": "tpv.merge",
    "METHODS": "tpv.merge",
    "FitConfig": "tpv.compose",
    "fit_multitask": "tpv.compose",
    "suggest": "tpv.suggest",
    "suggest_for_task": "tpv.suggest",
    "resolve_origin": "tpv.resolve",
    "get_task": "tpv.tasks",
    "Library": "tpv.library",
}
__all__ = [
    "__version__",
    "Origin",
    "SoftPrompt",
    "TaskPromptVector",
    "load",
    "IncompatibleError",
    "FormatError",
    "Backbone",
    "TrainConfig",
    "TrainResult",
    "train",
    "Evaluator",
    "evaluate",
    "mean_score",
    "combine",
    "combine_prompt",
    "combine_searched",
    "METHODS",
    "FitConfig",
    "fit_multitask",
    "suggest",
    "suggest_for_task",
    "resolve_origin",
    "get_task",
    "Library",
]


# Functions named like the module that defines them (tpv.train.train, ...): importing the module
# would set the package attribute to the module; the package keeps the function instead (the
# module stays importable: `from tpv.train import ...`, importlib.import_module("tpv.train")).
_SHADOWED = {"train", "evaluate", "suggest"}


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'tpv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs
    from tpv.backbone import Backbone
    from tpv.compose import FitConfig, fit_multitask
    from tpv.evaluate import Evaluator, evaluate, mean_score
    from tpv.io import FormatError
    from tpv.library import Library
    from tpv.merge import METHODS, combine, combine_prompt, combine_searched
    from tpv.resolve import resolve_origin
    from tpv.suggest import suggest, suggest_for_task
    from tpv.tasks import get_task
    from tpv.train import TrainConfig, TrainResult, train
    from tpv.vectors import IncompatibleError, Origin, SoftPrompt, TaskPromptVector, load
