"""The study's arithmetic on hand-computed cases: floors, kept fraction above the floor, the
bootstrap, paired tests, Holm, the verdict words, p-value text, row bookkeeping."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv import metrics
from tpv.experiments.rows import canonical_hash, code_commit, job_status
from tpv.floors import clears_floor, constant_floors, kept_above_floor, plain_kept
from tpv.stats import (
    _class_metric,
    bootstrap_ci,
    bootstrap_mean_ci,
    bootstrap_resamples,
    format_p,
    holm,
    paired_t,
    sign_flip,
    verdict,
)


# --- floors -------------------------------------------------------------------------------------
def test_floor_of_a_binary_task_by_hand():
    # 3 positives, 1 negative: always "positive" has accuracy 3/4 and F1 2*3/(4+3) = 6/7;
    # macro-F1 (6/7 + 0) / 2 = 3/7 (always "negative" only 2*1/(4+1)/2 = 0.2).
    f = constant_floors([1, 1, 1, 0], 2, "f1_binary")
    assert f["accuracy"] == {"score": 0.75, "label": 1}
    assert f["f1_binary"]["score"] == pytest.approx(6 / 7) and f["f1_binary"]["label"] == 1
    assert f["f1_macro"]["score"] == pytest.approx(3 / 7)
    assert f["score"] == pytest.approx(6 / 7)
    assert f["majority"] == {"label": 1, "share": 0.75} and f["counts"] == [1, 3]


def test_binary_f1_floor_is_the_positive_label_even_when_it_is_the_minority():
    f = constant_floors([0, 0, 0, 1], 2, "f1_binary")
    assert f["majority"]["label"] == 0 and f["accuracy"]["label"] == 0
    assert f["f1_binary"] == {"score": pytest.approx(2 * 1 / (4 + 1)), "label": 1}


def test_generation_metrics_have_no_constant_floor():
    assert constant_floors([0, 1], 2, "squad_f1") is None
    assert constant_floors([0, 1, 2], 3, "pearson_spearman")["score"] == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=40), st.sampled_from(["accuracy", "f1_macro"])
)
def test_floor_is_the_best_constant_answer(gold, metric):
    f = constant_floors(gold, 4, metric)
    scores = [metrics.compute(metric, [c] * len(gold), gold, 4)[metric] for c in range(4)]
    assert f["score"] == max(scores) and scores[f[metric]["label"]] == f["score"]
    # Closed forms: accuracy = majority share; macro-F1 = 2 n_c / (n + n_c) / C at the majority.
    n, top = len(gold), max(gold.count(c) for c in range(4))
    want = top / n if metric == "accuracy" else 2 * top / (n + top) / 4
    assert f["score"] == pytest.approx(want)


def test_kept_fraction_above_the_floor_by_hand():
    assert kept_above_floor(0.8, 0.9, 0.6) == pytest.approx(2 / 3)
    assert plain_kept(0.8, 0.9) == pytest.approx(0.8 / 0.9)
    # At the floor nothing is kept, below it the fraction is negative; a single-task prompt at
    # or below its floor has nothing above it to keep.
    assert kept_above_floor(0.6, 0.9, 0.6) == 0.0
    assert kept_above_floor(0.5, 0.9, 0.6) == pytest.approx(-1 / 3)
    assert kept_above_floor(0.7, 0.6, 0.6) is None
    assert clears_floor(0.61, 0.6) is True and clears_floor(0.6, 0.6) is False
    assert clears_floor(None, 0.6) is None


# --- bootstrap ----------------------------------------------------------------------------------
def test_bootstrap_of_a_perfect_classifier():
    gold = [0, 1, 2, 1, 0, 2, 2]
    assert bootstrap_ci(gold, gold, "accuracy", 3) == (1.0, 1.0)
    # Macro-F1 counts a class a resample lacks as F1 0 (as tpv.metrics does): below 1 at times.
    lo, hi = bootstrap_ci(gold, gold, "f1_macro", 3)
    assert hi == 1.0 and lo == pytest.approx(2 / 3)


def test_bootstrap_accuracy_matches_the_binomial_standard_error():
    # 400 examples, half right: the sampling sd of accuracy is sqrt(.25/400) = 0.025, so the
    # 95% interval is about 0.5 +- 1.96 * 0.025 = [0.451, 0.549].
    gold = [1] * 400
    pred = [1, 0] * 200
    lo, hi = bootstrap_ci(pred, gold, "accuracy", 2)
    assert lo == pytest.approx(0.451, abs=0.01) and hi == pytest.approx(0.549, abs=0.01)
    assert bootstrap_ci(pred, gold, "accuracy", 2) == (lo, hi)  # seeded: reproducible


def test_vectorised_metrics_equal_tpv_metrics_on_every_resample():
    rng = random.Random(0)
    gold = [rng.randrange(3) for _ in range(30)]
    pred = [rng.choice([-1, 0, 1, 2]) for _ in range(30)]  # -1: an invalid answer
    idx = bootstrap_resamples(30, resamples=20)
    import numpy as np

    p, g = np.asarray(pred)[idx], np.asarray(gold)[idx]
    for name in ("accuracy", "f1_macro"):
        got = _class_metric(name, 3)(p, g)
        want = [metrics.compute(name, list(a), list(b), 3)[name] for a, b in zip(p, g, strict=True)]
        assert got == pytest.approx(want)
    gold2 = [x % 2 for x in gold]
    p2, g2 = np.asarray([x % 2 for x in pred])[idx], np.asarray(gold2)[idx]
    got = _class_metric("f1_binary", 2)(p2, g2)
    assert got == pytest.approx(
        [metrics.f1_binary(list(a), list(b)) for a, b in zip(p2, g2, strict=True)]
    )


def test_bootstrap_of_a_mean_and_bad_input():
    lo, hi = bootstrap_mean_ci([0.0, 1.0] * 200)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(2 * 1.96 * 0.025, abs=0.02)
    with pytest.raises(ValueError, match="as many predictions as gold"):
        bootstrap_ci([0], [0, 1], "accuracy", 2)
    with pytest.raises(ValueError, match="no bootstrap for metric 'squad_f1'"):
        bootstrap_ci([0], [0], "squad_f1", 2)


# --- paired tests, Holm, words ------------------------------------------------------------------
def test_paired_t_by_hand():
    # differences 1..5: mean 3, sd sqrt(2.5), t = 3 / (sqrt(2.5)/sqrt(5)) = 4.2426 on 4 df.
    a, b = [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]
    assert paired_t(a, b) == pytest.approx(0.013236, abs=1e-5)
    assert paired_t([1, 1], [1, 1]) == 1.0  # no difference at all
    assert paired_t([2, 3], [1, 2]) is None  # a constant nonzero difference: undefined
    assert paired_t([1], [0]) is None


def test_sign_flip_is_exact_and_cannot_reject_with_five_seeds():
    # All 5 differences positive: only the all-plus and all-minus assignments reach |sum| = 15.
    assert sign_flip([1, 2, 3, 4, 5], [0] * 5) == 2 / 32
    assert sign_flip([1, 2, 3, 4, 5, 6], [0] * 6) == 2 / 64
    # differences 1, -1: every assignment has |sum| 0 or 2 >= 0: p = 1
    assert sign_flip([1, 0], [0, 1]) == 1.0


def test_holm_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([None, 0.02, 0.5]) == [None, pytest.approx(0.04), pytest.approx(0.5)]
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_verdict_words():
    assert verdict(0.1, 0.01) == "better"
    assert verdict(-0.1, 0.0499) == "worse"
    assert verdict(0.1, 0.05) == "no difference shown"  # at alpha: not below it
    assert verdict(0.1, None) == "no difference shown"
    assert verdict(0.0, 0.001) == "no difference shown"


def test_p_values_keep_three_significant_digits():
    assert format_p(0.0475) == "0.0475"  # never "0.05"
    assert format_p(0.04996) == "0.04996"  # "0.0500" would read as not significant
    assert format_p(0.31234) == "0.312"
    assert format_p(1.0) == "1.00"
    assert format_p(0.0123456) == "0.0123"
    assert format_p(0.0004) == "<0.001"
    assert format_p(None) == "-"


# --- rows -----------------------------------------------------------------------------------
def test_row_bookkeeping():
    assert canonical_hash({"a": 1, "b": [1, 2]}) == canonical_hash({"b": [1, 2], "a": 1})
    assert canonical_hash({"a": 1}) != canonical_hash({"a": 2})
    rows = {"x": {"job_hash": "h1"}, "y": {"job_hash": "old"}, "z": {}, "w": {"job_hash": "h"}}
    st_ = job_status(rows, {"x": "h1", "y": "h2", "z": "h3", "v": "h4"})
    assert st_ == {"current": ["x"], "stale": ["y", "z"], "missing": ["v"], "extra": ["w"]}


def test_code_commit_outside_a_checkout_is_unknown(tmp_path):
    assert code_commit(tmp_path) == "unknown"
    here = code_commit()
    assert here == "unknown" or len(here.split("-")[0]) == 40


def test_rows_stats_floors_and_report_import_without_torch():
    code = (
        "import sys; import tpv.experiments.report, tpv.experiments.rows, tpv.stats, tpv.floors,"
        " tpv.scoring; bad = [m for m in ('torch', 'tpv.experiments.runner') if m in sys.modules];"
        " print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
