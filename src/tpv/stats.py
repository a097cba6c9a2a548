"""Statistics that can decide: bootstrap intervals over test examples, paired tests over seeds,
Holm's correction within a table, and the words a report may use. No torch.

Choices (docs/results: every study table uses these):
- Bootstrap: resample the test examples with replacement (the percentile interval, 2,000
  resamples, fixed seed), recomputing the metric on each resample: macro-F1 is not a mean over
  examples, so the labels themselves are resampled, not per-example correctness. Rows store the
  predicted and gold label of every test example compactly (tpv.metrics.encode_labels). A metric
  that is a mean of per-example scores (generation F1, exact match) bootstraps those scores.
- Paired tests over seeds (the same seeds give the same shots to both inits): the paired t-test
  is the primary test. The sign-flip (permutation) test is exact and assumes no normality, but
  with n seeds its smallest two-sided p-value is 2 / 2^n: 0.0625 at 5 seeds, so it can never
  reject at 0.05 with 5 seeds or fewer. It is reported beside the t-test, not instead of it.
- Holm's step-down correction over the comparisons of one table (family-wise error 0.05).
- "better" / "worse" only where the corrected p-value is below alpha; otherwise "no difference
  shown". p-values print with 3 significant digits (0.0475 stays 0.0475, never 0.05).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


# --- bootstrap ---------------------------------------------------------------------------------
def _class_metric(name: str, num_labels: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Vectorised metric over (B, n) arrays of predictions and gold labels -> (B,) scores,
    matching tpv.metrics exactly (an invalid prediction, -1, is wrong for every class)."""

    def f1(pred: np.ndarray, gold: np.ndarray, c: int) -> np.ndarray:
        tp = ((pred == c) & (gold == c)).sum(1)
        fp = ((pred == c) & (gold != c)).sum(1)
        fn = ((pred != c) & (gold == c)).sum(1)
        denom = 2 * tp + fp + fn
        return np.where(tp > 0, 2 * tp / np.maximum(denom, 1), 0.0)

    if name == "accuracy":
        return lambda p, g: (p == g).mean(1)
    if name == "f1_binary":
        return lambda p, g: f1(p, g, 1)
    if name == "f1_macro":
        return lambda p, g: sum(f1(p, g, c) for c in range(num_labels)) / num_labels
    raise ValueError(f"no bootstrap for metric {name!r}; use accuracy, f1_binary or f1_macro")


def bootstrap_resamples(
    n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """(resamples, n) example indices drawn with replacement, reproducible from the seed."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(
    pred: Sequence[int],
    gold: Sequence[int],
    metric: str,
    num_labels: int,
    *,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a classification metric over the test examples."""
    if len(pred) != len(gold) or not gold:
        raise ValueError(f"bootstrap needs as many predictions as gold labels ({len(pred)} vs "
                         f"{len(gold)}), and at least one")  # fmt: skip
    p, g = np.asarray(pred), np.asarray(gold)
    idx = bootstrap_resamples(len(g), resamples, seed)
    scores = _class_metric(metric, num_labels)(p[idx], g[idx])
    return _percentiles(scores, level)


def bootstrap_mean_ci(
    values: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean of per-example scores (generation metrics)."""
    if not values:
        raise ValueError("bootstrap needs at least one value")
    v = np.asarray(values, dtype=float)
    idx = bootstrap_resamples(len(v), resamples, seed)
    return _percentiles(v[idx].mean(1), level)


def _percentiles(scores: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(scores, [tail, 100 - tail])
    return float(lo), float(hi)


# --- paired tests over seeds ------------------------------------------------------------------
def paired_t(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided paired t-test p-value; None with fewer than 2 pairs. Identical differences
    (no variance) give 1.0 when all are zero and None otherwise (the test is undefined)."""
    if len(a) != len(b):
        raise ValueError(f"paired test needs pairs: {len(a)} vs {len(b)} values")
    if len(a) < 2:
        return None
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if all(d == diffs[0] for d in diffs):
        return 1.0 if diffs[0] == 0 else None
    from scipy.stats import ttest_rel

    p = float(ttest_rel(a, b).pvalue)
    return None if math.isnan(p) else p


def sign_flip(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Exact two-sided sign-flip permutation test on the mean paired difference: the share of
    the 2^n sign assignments whose |mean| is at least the observed one. Smallest possible
    value 2/2^n. None with fewer than 2 pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired test needs pairs: {len(a)} vs {len(b)} values")
    n = len(a)
    if n < 2:
        return None
    if n > 20:
        raise ValueError(f"exact sign-flip test over {n} pairs is 2^{n} sums; use paired_t")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    observed = abs(sum(diffs))
    tol = 1e-12 * max(1.0, observed)  # float sums of the same magnitudes tie exactly
    hits = sum(
        abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - tol
        for signs in itertools.product((1, -1), repeat=n)
    )
    return hits / 2**n


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of a mean (of paired differences, or of a per-origin quantity);
    None with fewer than 2 values. No spread gives the point itself."""
    n = len(values)
    if n < 2:
        return None
    v = np.asarray(values, dtype=float)
    m, sd = float(v.mean()), float(v.std(ddof=1))
    if sd == 0:
        return m, m
    from scipy.stats import t

    half = float(t.ppf(1 - (1 - level) / 2, n - 1)) * sd / math.sqrt(n)
    return m - half, m + half


# --- multiple comparisons and words ------------------------------------------------------------
def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None entries are skipped and stay None): the i-th
    smallest of m p-values is multiplied by (m - i), kept monotone, capped at 1."""
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def verdict(diff: float, p_adjusted: float | None, alpha: float = ALPHA) -> str:
    """The only words a report may use for a comparison."""
    if p_adjusted is None or p_adjusted >= alpha or diff == 0:
        return "no difference shown"
    return "better" if diff > 0 else "worse"


def format_p(p: float | None) -> str:
    """3 significant digits, never rounded up to alpha: 0.0475 -> "0.0475", 0.31234 -> "0.312",
    1 -> "1.00", 0.04996 -> "0.04996"; below 0.001 -> "<0.001"; None -> "-"."""
    if p is None:
        return "-"
    if p < 0.001:
        return "<0.001"
    digits = 2 - math.floor(math.log10(p))  # decimals that keep 3 significant digits
    # 0.04996 would print "0.0500": add digits until the text stays on the same side of alpha.
    while p < ALPHA <= float(f"{p:.{digits}f}") and digits < 10:
        digits += 1
    return f"{p:.{digits}f}"
