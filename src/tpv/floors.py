"""The trivial floor: what the best constant answer scores, and scores measured above it.

A classifier that always gives one answer already scores something: always "positive" reaches
binary F1 2p/(1+p) (p the positive share: 0.739 at 59% positives), always the majority class
reaches accuracy max share. A score is only evidence of skill by how far it clears that floor.

For each metric the floor is the best score over every constant answer (one per label), computed
from the gold labels alone. The best constant is not always the majority class: under binary F1
it is always the positive label, under macro-F1 it is the class maximising 2n_c/(n+n_c)/C.
A task whose metric has no finite answer set (generation: SQuAD F1, MATH exact match) has no
constant-predictor floor: `constant_floors` returns None for it and reports leave the cell empty.
No torch here: reports compute floors from the labels recorded in rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from tpv import metrics

CLASS_METRICS = ("accuracy", "f1_macro", "f1_binary")


def constant_floors(gold: Sequence[int], num_labels: int, metric: str | None = None) -> dict | None:
    """Best constant answer under each classification metric, and the majority class.

    {"n", "counts", "majority": {"label", "share"}, "<metric>": {"score", "label"}, ...} with
    "score" the floor of the task's primary `metric` when given. None when the metric is not a
    classification metric over a finite label set (generation).
    """
    if metric is not None and metric not in (*CLASS_METRICS, "pearson_spearman"):
        return None
    if not gold:
        raise ValueError("no gold labels to compute a floor from")
    counts = [0] * num_labels
    for g in gold:
        counts[g] += 1
    n = len(gold)
    majority = max(range(num_labels), key=lambda c: counts[c])
    out: dict = {
        "n": n,
        "counts": counts,
        "majority": {"label": majority, "share": counts[majority] / n},
    }
    for name in CLASS_METRICS:
        if name == "f1_binary" and num_labels != 2:
            continue
        best_label, best = 0, -1.0
        for c in range(num_labels):
            score = metrics.compute(name, [c] * n, gold, num_labels)[name]
            if score > best:
                best_label, best = c, score
        out[name] = {"score": best, "label": best_label}
    # A constant prediction carries no correlation (tpv.metrics defines it as 0).
    out["pearson_spearman"] = {"score": 0.0, "label": majority}
    if metric is not None:
        out["score"] = out[metric]["score"]
    return out


def above_floor(score: float, floor: float) -> float:
    """How far a score clears the floor."""
    return score - floor


def kept_above_floor(multi: float, single: float, floor: float) -> float | None:
    """(multi - floor) / (single - floor): the share of the single-task skill above the trivial
    answer that the multi-task prompt keeps. None when the single-task prompt itself does not
    clear the floor (there is nothing above it to keep)."""
    if single <= floor:
        return None
    return (multi - floor) / (single - floor)


def plain_kept(multi: float, single: float) -> float | None:
    """multi / single, the ratio the paper reports (it counts the floor as kept skill)."""
    return multi / single if single > 0 else None


def clears_floor(interval_low: float | None, floor: float | None) -> bool | None:
    """A score clears its floor by a clear margin when the lower end of its bootstrap 95%
    interval lies above the floor (None when either is unknown)."""
    if interval_low is None or floor is None:
        return None
    return interval_low > floor
