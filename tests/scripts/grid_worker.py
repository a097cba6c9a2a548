"""One grid worker on the tiny Llama: `python grid_worker.py OUT [--serial]` runs the small grid
of tests/test_worker.py into OUT and prints its counts as JSON (--serial: Runner.run instead)."""

import json
import sys

from tpv.experiments import ExperimentConfig, Runner
from tpv.testing import keyword_grid_config, keyword_grid_tasks, tiny_llama

TASKS = keyword_grid_tasks()


def config(out) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        keyword_grid_config(
            out,
            "tiny-workers",
            multitask={
                "combinations": [["kw", "kw_flip"]],
                "methods": ["sum"],
                "lambda_grid": [0.5, 1.0],
            },  # fmt: skip
            fewshot={
                "targets": ["kw_target"],
                "shots": [0, 2],
                "seeds": [0],
                "inits": ["random", "tpv:kw+kw_flip", "spot:kw"],
                "train": {"max_steps": 4, "batch_size": 4, "eval_every": 2},
            },
        )
    )


def runner(out) -> Runner:
    return Runner(config(out), backbone=tiny_llama(), get_task=lambda name: TASKS[name]())


if __name__ == "__main__":
    from tpv.experiments.worker import work

    out = sys.argv[1]
    r = runner(out)
    counts = r.run() if "--serial" in sys.argv else work(r, poll_seconds=0.2)
    print(json.dumps(counts))
