"""One grid worker on the tiny Llama: `python grid_worker.py OUT [--serial]` runs the small grid
of tests/test_worker.py into OUT and prints its counts as JSON (--serial: Runner.run instead)."""

import json
import sys

from tpv.experiments import ExperimentConfig, Runner
from tpv.testing import keyword_task, tiny_llama

TASKS = {
    "kw": lambda: keyword_task(name="kw", n_train=48, n_val=16, n_test=16),
    "kw_flip": lambda: keyword_task(
        name="kw_flip", n_train=48, n_val=16, n_test=16, flip=True, seed=1
    ),
    "kw_target": lambda: keyword_task(name="kw_target", n_train=48, n_val=16, n_test=16, seed=2),
}


def config(out) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "experiment": {
                "name": "tiny-workers",
                "out": str(out),
                "num_tokens": 4,
                "origin_seeds": [0, 1],
                "sources": ["kw", "kw_flip"],
                "eval_examples": 16,
            },
            "train": {"max_steps": 6, "batch_size": 8, "eval_every": 3},
            "multitask": {
                "combinations": [["kw", "kw_flip"]],
                "methods": ["sum"],
                "lambda_grid": [0.5, 1.0],
            },  # fmt: skip
            "fewshot": {
                "targets": ["kw_target"],
                "shots": [0, 2],
                "seeds": [0],
                "inits": ["random", "tpv:kw+kw_flip", "spot:kw"],
                "train": {"max_steps": 4, "batch_size": 4, "eval_every": 2},
            },
        }
    )


def runner(out) -> Runner:
    return Runner(config(out), backbone=tiny_llama(), get_task=lambda name: TASKS[name]())


if __name__ == "__main__":
    from tpv.experiments.worker import work

    out = sys.argv[1]
    r = runner(out)
    counts = r.run() if "--serial" in sys.argv else work(r, poll_seconds=0.2)
    print(json.dumps(counts))
