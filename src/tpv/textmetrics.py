"""Metrics of generated text: SQuAD v2, MATH answers, ROUGE-L. Scores are fractions in [0, 1].

squad_v2  The official SQuAD 2.0 evaluation script's rules: answers normalised (lower case,
          punctuation and the articles a/an/the removed, whitespace collapsed); exact match and
          token F1 are the maximum over the gold answers that survive normalisation; a question
          without such an answer is unanswerable and its only gold answer is the empty string,
          so only an empty prediction scores on it. The model is taught to write `NO_ANSWER`
          ("unanswerable") there, and a prediction that normalises to it counts as empty.
          The official script reports percentages; here they are fractions. Primary score: F1.
math      A prediction is right when math-verify (Hugging Face's checker) finds the gold answer
          and the prediction mathematically equal: "\\frac{1}{2}" matches "0.5", "\\boxed{-15}"
          matches "-15". Primary score: the fraction right.
rouge_l   ROUGE-L F1 on lower-cased alphanumeric tokens (rouge-score's default tokenisation,
          no stemming): longest common subsequence LCS, P = LCS / |prediction|,
          R = LCS / |reference|, F = 2PR / (P + R); 0 when either side has no tokens.
          Maximum over the references, mean over examples.
"""

from __future__ import annotations

import re
import string
import threading
from collections import Counter
from collections.abc import Sequence

NO_ANSWER = "unanswerable"
GENERATION_METRICS = ("squad_v2", "math", "rouge_l")

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


# --- SQuAD v2 ------------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """The official script's normalisation: lower, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def squad_f1(gold: str, pred: str) -> float:
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)  # unanswerable: only an empty prediction scores
    same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_prediction(text: str, no_answer: str = NO_ANSWER) -> str:
    """The answer a generation stands for: the empty answer when it says `no_answer`."""
    return "" if normalize_answer(text) == normalize_answer(no_answer) else text.strip()


def squad_v2(
    predictions: Sequence[str], answers: Sequence[Sequence[str]], no_answer: str = NO_ANSWER
) -> dict:
    """Exact match and F1 (overall, answerable, unanswerable) as the official script computes
    them, in [0, 1]; `answers[i]` are the gold answer texts of question i (empty: none)."""
    exact, f1, has_ans = [], [], []
    for text, golds in zip(predictions, answers, strict=True):
        pred = squad_prediction(text, no_answer)
        golds = [a for a in golds if normalize_answer(a)] or [""]
        has_ans.append(golds != [""])
        exact.append(max(squad_exact(a, pred) for a in golds))
        f1.append(max(squad_f1(a, pred) for a in golds))

    def mean(xs, keep) -> float:
        picked = [x for x, k in zip(xs, keep, strict=True) if k]
        return sum(picked) / len(picked) if picked else 0.0

    every = [True] * len(exact)
    no_ans = [not h for h in has_ans]
    return {
        "exact": mean(exact, every),
        "f1": mean(f1, every),
        "has_ans_exact": mean(exact, has_ans),
        "has_ans_f1": mean(f1, has_ans),
        "has_ans_total": sum(has_ans),
        "no_ans_exact": mean(exact, no_ans),
        "no_ans_f1": mean(f1, no_ans),
        "no_ans_total": sum(no_ans),
    }


# --- MATH ----------------------------------------------------------------------------------
def math_equal(gold: str, pred: str) -> bool:
    """math-verify's verdict on the gold answer against a generated text; False on any failure."""
    from math_verify import parse, verify  # imported on use: sympy and antlr load slowly

    # math-verify times out through signal.alarm, which only the main thread may use.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(gold if "$" in gold or "\\boxed" in gold else f"${gold}$",
                            parsing_timeout=timeout)  # fmt: skip
        if not gold_parsed:
            gold_parsed = parse(gold, parsing_timeout=timeout)
        pred_parsed = parse(pred, parsing_timeout=timeout)
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # a checker crash on odd text is a wrong answer, not a failed run
        return False


def math_accuracy(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict:
    right = [
        any(math_equal(g, p) for g in golds) for p, golds in zip(predictions, answers, strict=True)
    ]
    return {"accuracy": sum(right) / max(len(right), 1), "correct": sum(right)}


# --- ROUGE-L -------------------------------------------------------------------------------
def rouge_tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row kept)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag = 0
        for j, y in enumerate(b, start=1):
            prev_row = row[j]
            row[j] = prev_diag + 1 if x == y else max(row[j], row[j - 1])
            prev_diag = prev_row
    return row[-1]


def rouge_l_f(reference: str, prediction: str) -> float:
    ref, pred = rouge_tokens(reference), rouge_tokens(prediction)
    if not ref or not pred:
        return 0.0
    lcs = lcs_length(ref, pred)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict:
    scores = [
        max((rouge_l_f(r, p) for r in refs), default=0.0)
        for p, refs in zip(predictions, answers, strict=True)
    ]
    return {"rouge_l": sum(scores) / max(len(scores), 1)}


# --- one entry point -----------------------------------------------------------------------
def compute(
    metric: str,
    predictions: Sequence[str],
    answers: Sequence[Sequence[str]],
    no_answer: str | None = None,
) -> dict:
    """All numbers of a generation metric, plus `score` (the primary one) and `metric`."""
    if metric == "squad_v2":
        out = squad_v2(predictions, answers, no_answer or NO_ANSWER)
        out["score"] = out["f1"]
    elif metric == "math":
        out = math_accuracy(predictions, answers)
        out["score"] = out["accuracy"]
    elif metric == "rouge_l":
        out = rouge_l(predictions, answers)
        out["score"] = out["rouge_l"]
    else:
        raise ValueError(f"unknown generation metric {metric!r}; use one of {GENERATION_METRICS}")
    out["n"] = len(predictions)
    out["empty"] = sum(not p.strip() for p in predictions)
    out["metric"] = metric
    return out
