"""The claims summary (tpv.experiments.report_claims) on hand-written rows: the decision rules,
the Bonferroni level, which rows decide a claim, and the floor exclusion. No model, no torch."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy.stats import t as student_t

from tpv.experiments.report import Floors
from tpv.experiments.report_claims import GOAL, MARGIN, claims_section, combine, decide
from tpv.metrics import encode_labels

GOLD = [1] * 6 + [0] * 4  # floor: always 1, binary F1 0.75


def _interval(xs, level):
    m, sd, n = statistics.mean(xs), statistics.stdev(xs), len(xs)
    half = student_t.ppf(1 - (1 - level) / 2, n - 1) * sd / math.sqrt(n)
    return m - half, m + half


@pytest.mark.parametrize(
    ("kind", "values", "m", "expected"),
    [
        ("better", [0.10, 0.11, 0.12], 1, "holds"),  # clearly above 0
        ("better", [0.00, 0.01, -0.01], 1, "fails"),  # a gain of MARGIN ruled out
        ("better", [0.10, -0.05, 0.02], 1, "undecided"),
        ("not worse", [-0.01, 0.00, 0.01], 1, "holds"),  # within -MARGIN
        ("not worse", [-0.20, -0.21, -0.19], 1, "fails"),  # surely a drop beyond MARGIN
        ("not worse", [-0.10, 0.05, 0.0], 1, "undecided"),
        ("keeps", [0.97, 0.98, 0.99], 1, "holds"),
        ("keeps", [0.50, 0.52, 0.51], 1, "fails"),
        ("keeps", [0.90, 1.00, 0.96], 1, "undecided"),
        ("better", [0.5], 1, "undecided"),  # one pair: no interval
    ],
)
def test_decision_rules(kind, values, m, expected):
    verdict, ci = decide(kind, values, m)
    assert verdict == expected
    if len(values) > 1:
        assert ci == pytest.approx(_interval(values, 0.95))


def test_bonferroni_widens_the_interval_with_the_number_of_sub_claims():
    diffs = [0.010, 0.020, 0.015, 0.012, 0.018]
    assert decide("better", diffs, 1)[0] == "holds"
    wide = decide("better", diffs, 40)[1]
    assert wide == pytest.approx(_interval(diffs, 1 - 0.05 / 40))
    assert wide[1] - wide[0] > _interval(diffs, 0.95)[1] - _interval(diffs, 0.95)[0]


def test_a_claim_fails_on_one_failure_and_holds_only_when_all_hold():
    assert combine(["holds", "holds"]) == "holds"
    assert combine(["holds", "undecided"]) == "undecided"
    assert combine(["holds", "fails", "undecided"]) == "fails"


def _floors():
    split = {"floors": {"score": 0.75, "accuracy": {"score": 0.6}}, "gold": encode_labels(GOLD)}
    row = {"task": "t", "metric": "f1_binary", "labels": ["no", "yes"],
           "splits": {"validation": split, "test": split}}  # fmt: skip
    row_u = row | {"task": "u"}
    return Floors([row, row_u])


def _source(task, seed, perfect):
    pred = GOLD if perfect else [1] * 10  # perfect clears the floor; all-1 sits on it
    return {"task": task, "origin_seed": seed, "lr_arm": None,
            "metrics": {"metric": "f1_binary", "score": 1.0 if perfect else 0.75,
                        "per_example": {"pred": encode_labels(pred),
                                        "gold": encode_labels(GOLD)}}}  # fmt: skip


def _cross(task, a, arm, score, b=None):
    return {"task": task, "from_seed": a, "arm": arm, "on_seed": b, "test": score,
            "mixed": arm == "other"}  # fmt: skip


def test_claim_rows_from_hand_written_rows():
    own = {0: 0.90, 1: 0.91, 2: 0.92, 3: 0.80}
    cross = [_cross("t", s, "own", v, s) for s, v in own.items()]
    # Moved: within 0.005 of own for origins 0-2; origin 3's source sits on its floor (left
    # out, or its -0.3 would fail the claim).
    cross += [_cross("t", s, "other", v - 0.005, (s + 1) % 3) for s, v in own.items() if s < 3]
    cross += [_cross("t", 3, "other", 0.5, 0)]
    cross += [_cross("t", s, "zero", 0.5 + 0.01 * s) for s in own]  # tau alone: far worse
    sources = [_source("t", s, s < 3) for s in own] + [_source("u", s, True) for s in own]
    # Claim 3: the sum keeps 0.6 of t and 0.98+ of u per origin: worst 0.6 -> fails the goal.
    mt = []
    for s in range(3):
        mt.append({"tasks": ["t", "u"], "method": "sum", "origin_seed": s, "seconds": 10.0,
                   "test": {"t": 0.75 + 0.6 * 0.25, "u": 0.99},
                   "single_task_test": {"t": 1.0, "u": 1.0}})  # fmt: skip
        mt.append({"tasks": ["t", "u"], "method": "joint(init=origin,steps=600)",
                   "origin_seed": s, "seconds": 100.0, "fit": {"steps": 600},
                   "test": {"t": 0.95, "u": 0.99},
                   "single_task_test": {"t": 1.0, "u": 1.0}})  # fmt: skip
    lines = claims_section({"cross_origin": cross, "sources": sources, "multitask": mt}, _floors())
    text = "\n".join(lines)
    lines = text.splitlines()
    assert "- **Claim 1: holds** (1 holds)." in text
    row = next(x for x in lines if x.startswith("| 1 | t: other origin"))
    assert row.startswith("| 1 | t: other origin not worse than own origin | -0.005 | [-0.005")
    assert row.endswith("| 3 | decides | holds |")
    zero = next(x for x in lines if x.startswith("| 1 | t: tau alone"))
    assert zero.endswith("| 3 | context | fails |")  # the origin matters here
    # Claim 3: the sum's worst kept fraction 0.6 < GOAL, constant over origins -> fails; sum vs
    # joint on t: 0.9 vs 0.95 every origin (-0.05 < -MARGIN) -> fails; on u: equal -> holds.
    assert "- **Claim 3: fails** (2 fails, 1 holds)." in text
    keep = next(x for x in lines if x.startswith("| 3 | t+u: sum keeps"))
    assert "| 0.600 | [0.600, 0.600] | 3 | decides | fails |" in keep
    t_vs_joint = next(x for x in lines if x.startswith("| 3 | t+u, t: sum not worse"))
    assert "| -0.050 |" in t_vs_joint and "fails; the sum's own search took 0.10x" in t_vs_joint
    assert GOAL == 0.95 and MARGIN == 0.03


def test_fewshot_claim_is_decided_by_the_validation_arm_only():
    rows = []
    for seed in range(5):
        for init, score in (("tpv:a+b", 0.80), ("random", 0.60), ("spot:a", 0.81),
                            ("attempt:a+b", 0.70)):  # fmt: skip
            for sel in ("validation", "none"):
                jitter = 0.001 * seed * (init == "random")
                rows.append({"target": "t", "shots": 10, "seed": seed, "init": init,
                             "selection": sel, "test": score + jitter})  # fmt: skip
    lines = claims_section({"fewshot": rows}, _floors())
    text = "\n".join(lines)
    # better than random: holds; not worse than spot (-0.01): holds; not worse than ATTEMPT
    # (+0.10): holds.
    assert "- **Claim 2: holds** (3 holds)." in text
    assert "- **Claim 2 (no selection): context only** (no deciding rows)." in text
    assert "| 2 | t, 10 shots: the sum not worse than attempt:a+b | +0.100 |" in text


def test_multitask_compositions_against_joint_tuning_paired_over_origins_with_holm():
    from scipy.stats import ttest_rel

    from tpv.experiments.report import multitask_comparisons

    sum_t, joint_t = [0.80, 0.82, 0.85], [0.90, 0.93, 0.94]
    rows = []
    j100, j600 = "joint(init=origin,steps=100)", "joint(init=origin,steps=600)"
    for s in range(3):
        for method, t_score, steps in (("sum", sum_t[s], None), (j100, 0.5, 100),
                                       (j600, joint_t[s], 600)):  # fmt: skip
            rows.append({"tasks": ["t", "u"], "method": method, "origin_seed": s,
                         "test": {"t": t_score, "u": 0.9 + 0.01 * s * (method == "sum")},
                         "fit": {"steps": steps} if steps else None})  # fmt: skip
    # Origin 2's source of u does not clear its floor: that origin is left out everywhere.
    comps = multitask_comparisons(rows, {("u", 2, None): False})
    against = {c["against"] for c in comps}
    assert against == {j600}  # the largest budget is the baseline
    by = {(c["init"], c["shots"]): c for c in comps}
    t = by[("t+u: sum", "t")]
    assert t["seeds"] == 2 and t["mean"] == pytest.approx(0.81)
    p_t = ttest_rel(sum_t[:2], joint_t[:2]).pvalue
    assert t["p"] == pytest.approx(p_t)
    # Holm over the 4 comparisons (sum and joint-100, each on t and u).
    assert len(comps) == 4
    ranked = sorted(c["p"] for c in comps if c["p"] is not None)
    assert t["p_holm"] >= t["p"] and min(c["p_holm"] for c in comps if c["p_holm"]) == (
        pytest.approx(min(1.0, len(ranked) * ranked[0]))
    )


def test_claims_not_measured_say_why():
    lines = claims_section({"multitask": [], "cross_origin": [{"task": "t", "from_seed": 0,
                            "arm": "own", "test": 0.9}]}, _floors())  # fmt: skip
    text = "\n".join(lines)
    # t/o0 has no source row: not flagged, so claim 1 has a row (own only: nothing to compare).
    assert (
        "- Claim 1: not measured (no comparison: its rows have no pair yet, or their sources"
        in text
    )
    assert "- Claim 2: not measured (no fewshot rows yet)." in text
    assert "- Claim 3: not measured (no multitask rows yet)." in text
    assert claims_section({"sources": []}, _floors()) == []


def test_claim_1_says_when_tau_alone_keeps_the_score_too():
    """At a large lr the origin is a small part of the prompt: if tau alone scores as well as
    tau on its own origin, moving it to another origin proves nothing, and the summary says so."""
    own = {0: 0.90, 1: 0.91, 2: 0.92}
    cross = [_cross("t", s, "own", v, s) for s, v in own.items()]
    cross += [_cross("t", s, "other", v + 0.001 * s, (s + 1) % 3) for s, v in own.items()]
    cross += [_cross("t", s, "zero", v - 0.002 + 0.001 * s) for s, v in own.items()]
    text = "\n".join(claims_section({"cross_origin": cross}, _floors()))
    assert (
        "- **Claim 1: holds** (1 holds); but tau alone (zero origin) keeps the score too on t:"
        in text
    )
    row = next(x for x in text.splitlines() if x.startswith("| 1 | t: other origin"))
    assert row.endswith(
        "| decides | holds; so does tau alone (zero origin): the origin plays no part |"
    )


def test_a_claim_lists_its_main_arm_before_its_learning_rate_arm():
    own = {0: 0.90, 1: 0.91, 2: 0.92}
    cross = []
    for lr in (None, 0.02):
        cross += [_cross("t", s, "own", v, s) | {"lr_arm": lr} for s, v in own.items()]
        cross += [
            _cross("t", s, "other", v - 0.2 * (lr is not None) + 0.001 * s, (s + 1) % 3)
            | {"lr_arm": lr}
            for s, v in own.items()
        ]
    lines = [x for x in claims_section({"cross_origin": cross}, _floors()) if "Claim 1" in x]
    assert lines[0].startswith("- **Claim 1: holds**")
    assert lines[1].startswith("- **Claim 1 (lr 0.02): fails**")  # a 0.2 drop, every vector
