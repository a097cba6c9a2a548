"""Task metrics. An invalid prediction (-1: generation matched no label) always counts as wrong.

Two-label tasks score an invalid answer as the wrong label, as the paper's code does (it
replaces an invalid prediction by the reverse of the gold label before F1): a false negative
on a gold-positive example and a false positive on a gold-negative one. Scoring it as "no
class" instead would let a model that answers gibberish on every negative example keep a
perfect binary F1. With more labels there is no single wrong label: an invalid answer is a
false negative of its gold class only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

INVALID = -1
# Per-example labels in rows: one character per example while classes fit in 36 digits.
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / max(len(gold), 1)


def _f1(pred: Sequence[int], gold: Sequence[int], cls: int) -> float:
    tp = sum(p == cls and g == cls for p, g in zip(pred, gold, strict=True))
    fp = sum(p == cls and g != cls for p, g in zip(pred, gold, strict=True))
    fn = sum(p != cls and g == cls for p, g in zip(pred, gold, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def invalid_as_wrong_label(pred: Sequence[int], gold: Sequence[int]) -> list[int]:
    """Two labels: each invalid prediction becomes the label that is not gold (1 - gold)."""
    return [1 - g if p == INVALID else p for p, g in zip(pred, gold, strict=True)]


def f1_binary(pred: Sequence[int], gold: Sequence[int]) -> float:
    """F1 of class 1 (the second label word is the positive class, as in the paper); an invalid
    prediction counts as the wrong label (see the module docstring)."""
    return _f1(invalid_as_wrong_label(pred, gold), gold, 1)


def f1_macro(pred: Sequence[int], gold: Sequence[int], num_labels: int) -> float:
    if num_labels == 2:
        pred = invalid_as_wrong_label(pred, gold)
    return sum(_f1(pred, gold, c) for c in range(num_labels)) / num_labels


def pearson_spearman(pred: Sequence[float], gold: Sequence[float]) -> tuple[float, float]:
    from scipy.stats import pearsonr, spearmanr

    if len(set(pred)) < 2 or len(set(gold)) < 2:
        return 0.0, 0.0  # a constant prediction carries no correlation
    p, s = float(pearsonr(pred, gold)[0]), float(spearmanr(pred, gold)[0])
    return (0.0 if math.isnan(p) else p), (0.0 if math.isnan(s) else s)


def compute(
    metric: str,
    pred: Sequence[int],
    gold: Sequence[int],
    num_labels: int,
    pred_values: Sequence[float] | None = None,
    gold_values: Sequence[float] | None = None,
) -> dict:
    """All metrics that apply, plus `score`: the task's primary metric."""
    out = {
        "accuracy": accuracy(pred, gold),
        "f1_macro": f1_macro(pred, gold, num_labels),
        "invalid": sum(p == INVALID for p in pred),
        "n": len(gold),
    }
    if num_labels == 2:
        out["f1_binary"] = f1_binary(pred, gold)
    if metric == "pearson_spearman":
        if pred_values is None or gold_values is None:
            raise ValueError("pearson_spearman needs predicted and gold values")
        out["pearson"], out["spearman"] = pearson_spearman(pred_values, gold_values)
        out["score"] = (out["pearson"] + out["spearman"]) / 2
    else:
        out["score"] = out[metric]
    out["metric"] = metric
    return out


def encode_labels(labels: Sequence[int]) -> str | list[int]:
    """Class ids as one compact string ("-" for INVALID), or the plain list beyond 36 classes."""
    if all(INVALID <= x < len(_DIGITS) for x in labels):
        return "".join("-" if x == INVALID else _DIGITS[x] for x in labels)
    return list(labels)


def decode_labels(code: str | Sequence[int]) -> list[int]:
    """The inverse of encode_labels."""
    if isinstance(code, str):
        return [INVALID if ch == "-" else _DIGITS.index(ch) for ch in code]
    return [int(x) for x in code]
