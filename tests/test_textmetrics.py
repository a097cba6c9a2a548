"""Metrics of generated text (SQuAD v2, MATH, ROUGE-L) and the binary-F1 rule for invalid answers,
checked against values computed by hand."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpv import metrics, textmetrics
from tpv.textmetrics import NO_ANSWER, lcs_length, normalize_answer, rouge_l_f, squad_f1


# --- binary F1: an invalid answer is the wrong label, on either class ---------------------------
def test_invalid_answer_on_a_negative_example_costs_binary_f1():
    gold = [1, 0, 0, 1]
    pred = [1, metrics.INVALID, 0, metrics.INVALID]
    # By hand: invalid -> wrong label: [1, 1, 0, 0]; class 1: tp 1, fp 1 (row 1), fn 1 (row 3).
    assert metrics.f1_binary(pred, gold) == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))  # 0.5
    # Class 0 the same way: tp 1 (row 2), fp 1 (row 3), fn 1 (row 1) -> 0.5; macro 0.5.
    assert metrics.f1_macro(pred, gold, 2) == pytest.approx(0.5)
    out = metrics.compute("f1_binary", pred, gold, 2)
    assert out["score"] == pytest.approx(0.5)
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["invalid"] == 2
    # Before the fix the invalid answer on row 1 was free: 2*1 / (2*1 + 0 + 1) = 2/3.
    assert out["score"] != pytest.approx(2 / 3)


def test_all_invalid_scores_zero_and_valid_answers_are_unchanged():
    gold = [0, 1, 0, 1]
    assert metrics.f1_binary([metrics.INVALID] * 4, gold) == 0.0
    # No invalid answers: plain F1 of class 1 (tp 1, fp 1, fn 1).
    assert metrics.f1_binary([1, 1, 0, 0], gold) == pytest.approx(0.5)


def test_multiclass_invalid_is_a_miss_of_its_gold_class_only():
    gold, pred = [0, 1, 2], [0, metrics.INVALID, 2]
    # class 0: 1.0; class 1: tp 0 -> 0; class 2: 1.0
    assert metrics.f1_macro(pred, gold, 3) == pytest.approx(2 / 3)


# --- SQuAD v2 (official script rules) ---------------------------------------------------------
def test_normalisation_as_the_official_script():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear and THE plum") == "apple pear and plum"
    assert normalize_answer("") == ""


def test_squad_f1_and_exact_by_hand():
    # gold "the 10th and 11th centuries" -> [10th, and, 11th, centuries];
    # pred "in the 10th century" -> [in, 10th, century]; common {10th}: P 1/3, R 1/4.
    p, r = 1 / 3, 1 / 4
    assert squad_f1("the 10th and 11th centuries", "in the 10th century") == pytest.approx(
        2 * p * r / (p + r)
    )
    out = textmetrics.squad_v2(
        ["France.", "in the 10th century", "unanswerable", "Normandy", "Unanswerable!"],
        [
            ["France", "france"],
            ["10th and 11th centuries", "in the 10th and 11th centuries"],
            [],  # unanswerable, predicted as such: right
            [],  # unanswerable, answered: wrong
            ["Rollo"],  # answerable, the model declined: wrong
        ],
    )
    # Row 2's F1 is the best over its golds: vs "in the 10th and 11th centuries" ->
    # [in, 10th, and, 11th, centuries]: common {in, 10th} -> P 2/3, R 2/5.
    f1_row2 = max(2 * p * r / (p + r), 2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))
    assert out["exact"] == pytest.approx(2 / 5)
    assert out["f1"] == pytest.approx((1 + f1_row2 + 1 + 0 + 0) / 5)
    assert out["has_ans_total"] == 3 and out["no_ans_total"] == 2
    assert out["has_ans_exact"] == pytest.approx(1 / 3)
    assert out["no_ans_exact"] == pytest.approx(1 / 2)
    assert out["no_ans_f1"] == pytest.approx(1 / 2)


def test_gold_answers_that_normalise_to_nothing_make_the_question_unanswerable():
    out = textmetrics.squad_v2(["", "the"], [["a"], ["The"]])
    assert out["no_ans_total"] == 2 and out["exact"] == 1.0 and out["f1"] == 1.0


def test_squad_no_answer_string_maps_to_empty():
    assert textmetrics.squad_prediction(f" {NO_ANSWER.upper()}. ") == ""
    assert textmetrics.squad_prediction("Paris") == "Paris"


# --- ROUGE-L ----------------------------------------------------------------------------------
def test_rouge_l_by_hand():
    # ref [the cat sat on the mat] (6), pred [the cat on a mat] (5); LCS the-cat-on-mat = 4.
    p, r = 4 / 5, 4 / 6
    assert rouge_l_f("The cat sat on the mat.", "the cat, on a mat") == pytest.approx(
        2 * p * r / (p + r)
    )
    assert rouge_l_f("Ad sales boost Time Warner profit", "Ad sales boost Time Warner profit") == 1
    assert rouge_l_f("abc", "") == 0.0
    assert rouge_l_f("one two", "three four") == 0.0
    out = textmetrics.compute("rouge_l", ["a b", "x"], [["a b c", "a b"], ["y"]])
    assert out["score"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["n"] == 2 and out["metric"] == "rouge_l"


def _lcs_brute(a, b) -> int:
    for k in range(min(len(a), len(b)), 0, -1):
        subs = set(itertools.combinations(a, k))
        if any(c in subs for c in itertools.combinations(b, k)):
            return k
    return 0


@given(st.lists(st.sampled_from("abc"), max_size=7), st.lists(st.sampled_from("abc"), max_size=7))
def test_lcs_matches_brute_force_and_is_symmetric(a, b):
    assert lcs_length(a, b) == _lcs_brute(a, b) == lcs_length(b, a)


# --- MATH through math-verify -----------------------------------------------------------------
@pytest.mark.parametrize(
    "gold, pred, right",
    [
        ("\\frac{1}{2}", "0.5", True),
        ("-15", "The answer is \\boxed{-15}.", True),
        ("-15", "15", False),
        ("12", "12", True),
        ("\\frac{1}{2}", "1/3", False),
        ("7", "no idea", False),
    ],
)
def test_math_answers_compared_by_math_verify(gold, pred, right):
    assert textmetrics.math_equal(gold, pred) is right


def test_math_accuracy():
    out = textmetrics.compute("math", ["\\boxed{2}", "0.5", "9"], [["2"], ["\\frac{1}{2}"], ["8"]])
    assert out["score"] == pytest.approx(2 / 3) and out["correct"] == 2


def test_unknown_generation_metric_is_refused():
    with pytest.raises(ValueError, match="unknown generation metric"):
        textmetrics.compute("bleu", ["a"], [["a"]])
