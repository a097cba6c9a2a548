"""What each job's result depends on: its effective settings, hashed into the row's job hash.

A row is reused only when the job hash recorded in it equals the hash of the job's settings
under the current config. So a grid can grow across sessions (more seeds, shots, inits or
targets: new keys, old rows kept), while changing anything a finished job depended on (the
training budget of the sources, the scorer, the test sample size, ...) makes exactly the rows
that depended on it stale, downstream stages included: a cross-origin, multi-task or few-shot
job includes the settings of every source prompt it uses.

Not in the hash on purpose: the output directory, the config file's name and comments, the code
commit (recorded in the row; a code change that changes results deserves a new config name or
a redo) and settings of other jobs. A stage that adds an option reads it here too, or its rows
would be reused across a change of it.
"""

from __future__ import annotations

from typing import Any

from tpv.experiments.config import ExperimentConfig
from tpv.experiments.rows import canonical_hash


def _common(cfg: ExperimentConfig) -> dict[str, Any]:
    """What every job that runs the model depends on."""
    return {
        "model": cfg.model,
        "num_tokens": cfg.num_tokens,
        "max_input_tokens": cfg.max_input_tokens,
        "scorer": str(cfg.scorer),
        "test_examples": cfg.test_examples,
    }


def source_settings(
    cfg: ExperimentConfig, task: str, origin_seed: int, lr: float | None = None
) -> dict[str, Any]:
    """A source prompt: tuned on `task` from origin `origin_seed` with [train] (at `lr` for a
    learning-rate arm: [train] with its lr replaced)."""
    return _common(cfg) | {
        "task": task,
        "origin_seed": origin_seed,
        "eval_examples": cfg.eval_examples,  # validation picks the kept checkpoint
        "train": cfg.train if lr is None else cfg.train | {"lr": lr},
    }


def none_arm_train(cfg: ExperimentConfig) -> dict[str, Any]:
    """[fewshot.train] as the true few-shot arm runs it: the last prompt kept, no early
    stopping (both would need labelled validation data)."""
    return {k: v for k, v in cfg.fewshot_train.items() if k != "patience"} | {"keep": "last"}


def _sources_used_by_init(cfg: ExperimentConfig, init: str) -> list[str]:
    kind, _, arg = init.partition(":")
    if kind == "random":
        return []
    if kind != "suggest" and arg:  # spot:A, tpv:A+B, attempt:A+B name their sources
        return arg.split("+")
    return list(cfg.sources)  # suggest ranks every source


def sources_used(
    cfg: ExperimentConfig, stage: str, params: dict[str, Any]
) -> list[tuple[str, int, float | None]]:
    """The source prompts a job reads, as (task, origin seed, lr arm or None): what its hash
    includes, and what must be recorded before it can run (tpv.experiments.worker)."""
    if stage == "cross_origin":
        return [(params["task"], params["from_seed"], params.get("lr"))]
    if stage == "similarity":
        return [(t, s, None) for t in cfg.sources for s in cfg.origin_seeds]
    if stage == "multitask":
        return [(t, params["origin_seed"], None) for t in params["tasks"]]
    if stage == "fewshot":
        s = cfg.fewshot_origin_seed
        return [(t, s, None) for t in _sources_used_by_init(cfg, params["init"])]
    return []


def job_settings(cfg: ExperimentConfig, stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """The effective settings of one job of `stage` with `params` (Runner.jobs)."""
    if stage == "floors":
        # Only the labels of the seeded samples: no model, no scorer.
        return {
            "task": params["task"],
            "eval_examples": cfg.eval_examples,
            "test_examples": cfg.test_examples,
        }
    if stage == "sources":
        return source_settings(cfg, params["task"], params["origin_seed"], params.get("lr"))
    used = [source_settings(cfg, *u) for u in sources_used(cfg, stage, params)]
    if stage == "cross_origin":
        source = used[0]
        if "control" in params:  # claim 1's controls (tpv.experiments.controls)
            from tpv.experiments.controls import control_settings

            return _common(cfg) | {"source": source} | control_settings(params)
        return _common(cfg) | {"source": source, "on_seed": params["on_seed"]}
    if stage == "similarity":
        return {"sources": used}
    if stage == "multitask":
        s = params["origin_seed"]
        return _common(cfg) | {
            "method": params["method"],
            "origin_seed": s,
            "eval_examples": cfg.eval_examples,
            "lambda_grid": cfg.lambda_grid,
            "sources": used,
        }
    if stage == "fewshot":
        s = cfg.fewshot_origin_seed
        init = params["init"]
        settings = _common(cfg) | {
            "target": params["target"],
            "shots": params["shots"],
            "seed": params["seed"],
            "init": init,
            "origin_seed": s,
            "eval_examples": cfg.eval_examples,
            "train": cfg.fewshot_train if params["shots"] else None,
            "lambda": cfg.fewshot_lambda if init.startswith("tpv") else None,
            "lambda_grid": cfg.lambda_grid if cfg.fewshot_lambda == "search" else None,
            "sources": used,
        }
        if params.get("selection", "validation") == "none":
            # The true few-shot arm reads no validation data: its own training and lambda.
            lam = cfg.fewshot_none_lambda if init.startswith("tpv") else None
            settings |= {
                "selection": "none",
                "eval_examples": None,
                "train": none_arm_train(cfg) if params["shots"] else None,
                "lambda": lam,
                "lambda_grid": cfg.lambda_grid if lam == "shots" else None,
            }
        return settings
    raise ValueError(f"unknown stage {stage!r}")


def job_hash(cfg: ExperimentConfig, stage: str, params: dict[str, Any]) -> str:
    return canonical_hash(job_settings(cfg, stage, params))
