"""The report's numbers on hand-written rows: floors, intervals, the source flag, kept fractions
above the floor, accuracy beside F1, paired tests with Holm and the verdict words, and the
config bookkeeping (missing cells, rows of other settings). No model, no torch."""

from __future__ import annotations

import pytest
from scipy.stats import ttest_rel

from tpv.experiments.report import build_report
from tpv.experiments.rows import row_path, write_json_atomic, write_manifest
from tpv.stats import format_p, sign_flip

GOLD_T = "1111110000"  # 6 "yes", 4 "no": floors accuracy 0.6, binary F1 2*6/(10+6) = 0.75
GOLD_U = "0001112222"  # 3/3/4: macro-F1 floor 2*4/(10+4)/3 = 0.1905

FLOOR_T = {
    "n": 10,
    "counts": [4, 6],
    "majority": {"label": 1, "share": 0.6},
    "accuracy": {"score": 0.6, "label": 1},
    "f1_binary": {"score": 0.75, "label": 1},
    "f1_macro": {"score": 0.375, "label": 1},
    "score": 0.75,
}
FLOOR_U = {
    "n": 10,
    "counts": [3, 3, 4],
    "majority": {"label": 2, "share": 0.4},
    "accuracy": {"score": 0.4, "label": 2},
    "f1_macro": {"score": 8 / 14 / 3, "label": 2},
    "score": 8 / 14 / 3,
}
# Few-shot test scores over seeds 0-4 at 4 shots.
PAPER = [0.80, 0.82, 0.81, 0.83, 0.79]
RANDOM = [0.60, 0.61, 0.59, 0.62, 0.60]
SPOT = [0.81, 0.83, 0.80, 0.84, 0.80]
SUGGEST = [0.83, 0.84, 0.84, 0.85, 0.81]


def _metrics(score, acc, pred=None, gold=None, metric="f1_binary"):
    m = {"score": score, "accuracy": acc, "metric": metric}
    if pred is not None:
        m["per_example"] = {"pred": pred, "gold": gold}
    return m


def _write(out, stage, key, row, jobs, job_hash="h"):
    jobs.setdefault(stage, {})[key] = "h"
    write_json_atomic(
        row_path(out, stage, key), row | {"stage": stage, "key": key, "job_hash": job_hash}
    )


@pytest.fixture
def report(tmp_path):
    out, jobs = tmp_path / "study", {}
    floors = {
        "t": ("f1_binary", ["no", "yes"], FLOOR_T, GOLD_T),
        "u": ("f1_macro", ["a", "b", "c"], FLOOR_U, GOLD_U),
    }
    for task, (metric, labels, floor, gold) in floors.items():
        split = {"floors": floor, "gold": gold}
        row = {"task": task, "metric": metric, "labels": labels,
               "splits": {"validation": split, "test": split}}  # fmt: skip
        _write(out, "floors", task, row, jobs)
    source = {"vector_norm": 10.0, "origin_norm": 2.0, "best_val": 0.9, "steps": 10}
    # t/o0 is perfect (interval [1, 1], clears 0.75); t/o1 says "yes" to everything (at floor).
    # Two ways the model ran (tpv.fastpath): the report says the rows mix them.
    _write(out, "sources", "t__o0", source | {"task": "t", "origin_seed": 0, "test": 1.0,
           "compute_dtype": "bfloat16", "fast_path": True, "code_commit": "abc1234",
           "init_test": 0.5, "init_metrics": _metrics(0.5, 0.5),
           "metrics": _metrics(1.0, 1.0, GOLD_T, GOLD_T)}, jobs)  # fmt: skip
    _write(out, "sources", "t__o1", source | {"task": "t", "origin_seed": 1, "test": 0.75,
           "compute_dtype": "float32", "fast_path": False,
           "init_test": 0.5, "init_metrics": _metrics(0.5, 0.5),
           "metrics": _metrics(0.75, 0.6, "1" * 10, GOLD_T)}, jobs)  # fmt: skip
    _write(out, "sources", "u__o0", source | {"task": "u", "origin_seed": 0, "test": 0.8,
           "init_test": 0.3, "metrics": _metrics(0.8, 0.8, metric="f1_macro")}, jobs)  # fmt: skip
    # A row recorded under other settings: listed, not used (t keeps 2 origins).
    _write(out, "sources", "t__o2", source | {"task": "t", "origin_seed": 2, "test": 0.1,
           "init_test": 0.1}, jobs, job_hash="old")  # fmt: skip
    mt = {"tasks": ["t", "u"], "method": "sum", "origin_seed": 0, "lambda": 0.5,
          "test": {"t": 0.875, "u": 0.5}, "single_task_test": {"t": 1.0, "u": 0.8},
          "test_metrics": {"t": _metrics(0.875, 0.9), "u": _metrics(0.5, 0.6, metric="f1_macro")},
          "kept_fraction": {"t": 0.875, "u": 0.625}}  # fmt: skip
    _write(out, "multitask", "t+u__sum__o0", mt, jobs)
    inits = {"tpv:t+u": PAPER, "random": RANDOM, "spot:t": SPOT, "suggest:2": SUGGEST}
    for init, scores in inits.items():
        if not init.startswith("suggest"):
            row = {"target": "t", "shots": 0, "seed": 0, "init": init, "test": 0.7,
                   "metrics": _metrics(0.7, 0.55)}  # fmt: skip
            _write(out, "fewshot", f"t__k0__s0__{init}", row, jobs)
        for seed, s in enumerate(scores):
            row = {"target": "t", "shots": 4, "seed": seed, "init": init, "test": s,
                   "metrics": _metrics(s, 0.7)}  # fmt: skip
            _write(out, "fewshot", f"t__k4__s{seed}__{init}", row, jobs)
    jobs["fewshot"]["t__k4__s5__random"] = "h"  # in the config, not run yet
    config = {"fewshot_train": {"max_steps": 4}, "eval_examples": 64}
    write_manifest(out, {"config_file": "configs/x.toml", "config_sha": "abc123",
                         "code_commit": "c0ffee", "jobs": jobs, "config": config})  # fmt: skip
    return build_report(out, tmp_path / "report", plots=False).read_text()


def _row(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_report_names_its_config_and_marks_missing_and_stale_rows(report):
    assert "Config `configs/x.toml` (config hash abc123, code c0ffee)" in report
    assert "Cells still missing: 1** (`fewshot/t__k4__s5__random`)" in report
    assert "Rows recorded under other settings, not shown: 1** (`sources/t__o2`)" in report


def test_report_says_how_the_model_ran_and_that_rows_mix_it(report):
    line = _row(report, "- Model weights in")
    assert "bfloat16: 1 row; float32, plain path: 1 row" in line
    assert "mixed" in line
    line = _row(report, "- Code commits of the rows shown:")
    # Most rows first; one row is "1 row".
    assert line.startswith("- Code commits of the rows shown: unknown: 28 rows; abc1234: 1 row (")


def test_floor_rows(report):
    assert (
        _row(report, "| t | test |")
        == "| t | test | 10 | yes (0.600) | 0.600 | f1_binary 0.750 (always yes) |"
    )
    assert (
        _row(report, "| u | test |")
        == "| u | test | 10 | c (0.400) | 0.400 | f1_macro 0.190 (always c) |"
    )
    assert _row(report, "| floor (best constant answer) |") == (
        "| floor (best constant answer) | 0.750 / 0.600 | 0.750 / 0.600 |"
    )


def test_sources_intervals_and_the_floor_flag(report):
    # mean of 1.0 and 0.75 = 0.875, sd 0.177; accuracy mean (1.0 + 0.6) / 2 = 0.8.
    row = _row(report, "| t | 2 |")
    assert (
        "| 0.750 / 0.600 | 0.500 ± 0.000 / 0.500 | 0.875 ± 0.177 / 0.800 | [1.000, 1.000]; [" in row
    )
    assert "| 1/2 | 5.000 ± 0.000 |" in row
    assert "Below or at the floor (excluded from claims): t/o1." in report


def test_multitask_kept_fraction_above_the_floor(report):
    row = _row(report, "| t+u | sum |")
    # t: (0.875 - 0.75) / (1 - 0.75) = 0.5; u: (0.5 - 0.1905) / (0.8 - 0.1905) = 0.508.
    assert "t: 0.875 / 0.900 (kept above floor 0.500; plain 0.875)" in row
    assert "u: 0.500 / 0.600 (kept above floor 0.508; plain 0.625)" in row
    # Cost: the two sources' 10 steps each; no seconds recorded in these rows.
    assert row.endswith("| 0.500 | 20; - |")
    assert "best worst-task kept fraction above the floor 0.500 (sum); falls short" in report


def test_fewshot_cells_keep_accuracy_and_comparisons_are_holm_corrected(report):
    assert _row(report, "| random |") == "| random | 0.700 / 0.550 | 0.604 ± 0.011 / 0.700 |"
    pairs = [  # (init, against, a, b) in the report's order
        ("random", "paper's sum (tpv:t+u)", RANDOM, PAPER),
        ("spot:t", "paper's sum (tpv:t+u)", SPOT, PAPER),
        ("suggest:2", "paper's sum (tpv:t+u)", SUGGEST, PAPER),
        ("suggest:2", "oracle single source (spot:t)", SUGGEST, SPOT),
        ("suggest:2", "random (random)", SUGGEST, RANDOM),
    ]
    assert "Holm's correction over the 5 comparisons of this table" in report
    p = [float(ttest_rel(a, b).pvalue) for _, _, a, b in pairs]
    order = sorted(range(5), key=lambda i: p[i])
    adj, running = [0.0] * 5, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (5 - rank) * p[i]))
        adj[i] = running
    # The case this guards: suggest beats the oracle source nominally (p < 0.05), not after Holm.
    assert p[3] < 0.05 <= adj[3]
    words = ["worse", "no difference shown", "better", "no difference shown", "better"]
    for (init, against, a, b), pi, ai, word in zip(pairs, p, adj, words, strict=True):
        line = _row(report, f"| {init} | 4 | {against} |")
        flip = format_p(sign_flip(a, b))  # 0.0625 where all 5 differences share a sign
        assert f"| {format_p(pi)} | {flip} | {format_p(ai)} | {word} | 5 |" in line
